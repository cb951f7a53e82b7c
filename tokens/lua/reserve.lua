-- Grant a reservation for one Keepa call, or return how long the caller must wait.
--
-- Units: tokens are floats, times are Redis server milliseconds (from TIME, so
-- host clocks do not matter), the refill rate is tokens per Keepa minute.
--
-- The stored balance is the balance at the last write, with every granted
-- reservation already subtracted. Keepa adds refill_rate * interval / 60000
-- tokens at each refill, capped at 60 * refill_rate; the balance at the
-- current time is projected from next_refill_ms and refill_interval_ms.
--
-- A call of cost c may start when the projected balance P satisfies
--   P >= min_threshold and P - c >= max_deficit,
-- and, for fairness, P - c still covers the need of every waiter ahead of it in
-- the queue. Keepa may receive calls in flight in any order, and accepts each
-- one while its balance is positive. P already has every reservation in flight
-- subtracted, so the worst order for an in-flight call of cost x leaves it
-- P + x, and a grant must also keep P - c + (smallest cost in flight) >= min_threshold. The queue is ordered by arrival; a ticket expires when its waiter
-- does not come back within its wait plus a grace period.
--
-- KEYS: state hash, in-flight expiry zset, in-flight cost hash, queue zset,
--       ticket cost hash, ticket expiry zset, ticket sequence counter
-- ARGV: mode ("grant" or "check"), reservation id, cost, min_threshold,
--       max_deficit, reservation_ttl_ms, ticket_grace_ms, turn_wait_ms
-- Returns one of:
--   {"granted", balance_before, balance_after, in_flight_total}
--   {"wait", wait_ms, balance, position}
--   {"empty"}                       no reading yet: sync first
--   {"too_large", max_grantable}    the cost can never satisfy the deficit floor
--   {"never", balance}              refill rate 0: no refill will ever come

local state_key, inflight_key, inflight_cost_key = KEYS[1], KEYS[2], KEYS[3]
local queue_key, ticket_cost_key, ticket_expiry_key, sequence_key = KEYS[4], KEYS[5], KEYS[6], KEYS[7]

local mode = ARGV[1]
local id = ARGV[2]
local cost = tonumber(ARGV[3])
local min_threshold = tonumber(ARGV[4])
local max_deficit = tonumber(ARGV[5])
local reservation_ttl_ms = tonumber(ARGV[6])
local ticket_grace_ms = tonumber(ARGV[7])
local turn_wait_ms = tonumber(ARGV[8])

-- Comparisons allow this much float rounding, so that a waiter woken at the
-- computed refill passes even when the balance was rolled forward in steps.
local EPSILON = 1e-9

-- The delay before a caller asks again when only calls still in flight block
-- it. Their responses, not a refill, will make room, and they take about one
-- round trip to Keepa.
local IN_FLIGHT_POLL_MS = 20

local now = redis_now_ms()


-- 1. Read the ledger.

local fields = redis.call('HMGET', state_key, 'balance', 'next_refill_ms', 'refill_rate', 'refill_interval_ms')
if not fields[1] then
    return {'empty'}
end
local balance = tonumber(fields[1])
local next_refill = tonumber(fields[2])
local refill_rate = tonumber(fields[3])
local interval = tonumber(fields[4])
local per_refill = refill_rate * interval / 60000
local cap = 60 * refill_rate

local function after_refills(start_balance, refills)
    if refills <= 0 or start_balance >= cap then
        return start_balance
    end
    return math.min(cap, start_balance + refills * per_refill)
end


-- 2. Project the balance to now.

balance, next_refill = project_balance(balance, next_refill, refill_rate, interval, now)


-- 3. Drop reservations and tickets that expired. An expired reservation stays
--    spent, because Keepa may have charged it; the next reading reconciles.

drop_expired_reservations(inflight_key, inflight_cost_key, now)
local dead_tickets = redis.call('ZRANGEBYSCORE', ticket_expiry_key, '-inf', now)
for _, dead_id in ipairs(dead_tickets) do
    redis.call('ZREM', queue_key, dead_id)
    redis.call('ZREM', ticket_expiry_key, dead_id)
    redis.call('HDEL', ticket_cost_key, dead_id)
end


-- 4. Reject a cost that no balance can ever cover.

local function need(call_cost)
    return math.max(min_threshold, call_cost + max_deficit)
end

if refill_rate > 0 and need(cost) > math.max(cap, balance) + EPSILON then
    return {'too_large', format_number(math.max(cap, balance) - max_deficit)}
end


-- 5. Find the waiters ahead of this caller: all tickets when it has none yet.

local my_score = redis.call('ZSCORE', queue_key, id)
local ahead
if my_score then
    ahead = redis.call('ZRANGEBYSCORE', queue_key, '-inf', '(' .. my_score)
else
    ahead = redis.call('ZRANGE', queue_key, 0, -1)
end
local ahead_costs = {}
if #ahead > 0 then
    local raw_costs = redis.call('HMGET', ticket_cost_key, unpack(ahead))
    for index, raw in ipairs(raw_costs) do
        ahead_costs[index] = tonumber(raw) or 0
    end
end


-- 6. Grant when the floor is kept and every waiter ahead keeps what it needs.

local grantable = balance + EPSILON >= min_threshold and balance - cost + EPSILON >= max_deficit
for _, ahead_cost in ipairs(ahead_costs) do
    if balance - cost + EPSILON < need(ahead_cost) then
        grantable = false
    end
end

local in_flight_total = 0
local smallest_in_flight = nil
for _, value in ipairs(redis.call('HVALS', inflight_cost_key)) do
    local in_flight_cost = tonumber(value)
    in_flight_total = in_flight_total + in_flight_cost
    if not smallest_in_flight or in_flight_cost < smallest_in_flight then
        smallest_in_flight = in_flight_cost
    end
end

-- The balance this grant would leave to the in-flight call that Keepa receives last.
local order_target = nil
if smallest_in_flight and smallest_in_flight < cost then
    order_target = min_threshold + cost - smallest_in_flight
end
local order_safe = not order_target or balance + EPSILON >= order_target
grantable = grantable and order_safe

if grantable then
    local balance_after = balance - cost
    in_flight_total = in_flight_total + cost
    if mode == 'grant' then
        redis.call('HSET', state_key, 'balance', format_number(balance_after), 'next_refill_ms', next_refill)
        redis.call('ZADD', inflight_key, now + reservation_ttl_ms, id)
        redis.call('HSET', inflight_cost_key, id, format_number(cost))
        redis.call('ZREM', queue_key, id)
        redis.call('ZREM', ticket_expiry_key, id)
        redis.call('HDEL', ticket_cost_key, id)
    end
    return {'granted', format_number(balance), format_number(balance_after), format_number(in_flight_total)}
end


-- 7. Compute the wait until the condition will hold, from the refill schedule.
--    Returns -1 when refills alone never reach the target (cap or rate 0).

local function wait_until(target)
    if balance + EPSILON >= target then
        return 0
    end
    if per_refill <= 0 then
        return -1
    end
    local refills = math.max(1, math.ceil((target - balance - EPSILON) / per_refill))
    while refills > 1 and after_refills(balance, refills - 1) + EPSILON >= target do
        refills = refills - 1
    end
    while after_refills(balance, refills) + EPSILON < target do
        if after_refills(balance, refills) >= cap then
            return -1
        end
        refills = refills + 1
    end
    return (next_refill - now) + (refills - 1) * interval
end

-- First come, first served: this caller's turn comes when the balance covers
-- every waiter ahead in order and then this caller.
local turn_target = 0
local served = 0
for _, ahead_cost in ipairs(ahead_costs) do
    turn_target = math.max(turn_target, served + need(ahead_cost))
    served = served + ahead_cost
end
turn_target = math.max(turn_target, served + need(cost))

-- It may also pass earlier when the balance covers it and every waiter ahead at once.
local surplus_target = need(cost)
for _, ahead_cost in ipairs(ahead_costs) do
    surplus_target = math.max(surplus_target, cost + need(ahead_cost))
end

local turn_wait = wait_until(turn_target)
local surplus_wait = wait_until(surplus_target)
local wait_ms
if turn_wait < 0 and surplus_wait < 0 then
    if #ahead_costs == 0 then
        return {'never', format_number(balance)}
    end
    -- The waiters ahead must be served first; look again at the next refill.
    wait_ms = next_refill - now
elseif turn_wait < 0 then
    wait_ms = surplus_wait
elseif surplus_wait < 0 then
    wait_ms = turn_wait
else
    wait_ms = math.min(turn_wait, surplus_wait)
end
if not order_safe then
    local order_wait = wait_until(order_target)
    if order_wait < 0 or order_wait > IN_FLIGHT_POLL_MS then
        order_wait = IN_FLIGHT_POLL_MS
    end
    wait_ms = math.max(wait_ms, order_wait)
end
if wait_ms <= 0 then
    -- This caller's turn has come but a waiter ahead, due now too, has not
    -- taken its grant yet.
    wait_ms = turn_wait_ms
end


-- 8. Queue the caller (or renew its ticket) so that later arrivals leave it its share.

if mode == 'grant' then
    if not my_score then
        redis.call('ZADD', queue_key, redis.call('INCR', sequence_key), id)
        redis.call('HSET', ticket_cost_key, id, format_number(cost))
    end
    redis.call('ZADD', ticket_expiry_key, now + wait_ms + ticket_grace_ms, id)
end
return {'wait', tostring(math.ceil(wait_ms)), format_number(balance), tostring(#ahead_costs)}
