-- Release a reservation or a waiter's ticket without a Keepa reading.
--
-- Units: tokens are floats, times are Redis server milliseconds, the refill
-- rate is tokens per minute.
--
-- KEYS: state hash, in-flight expiry zset, in-flight cost hash, queue zset,
--       ticket cost hash, ticket expiry zset
-- ARGV: id, mode:
--   "refund"  the call was never sent: give its tokens back and close it
--   "spent"   the call may have reached Keepa: close it and keep its tokens spent
--   "ticket"  the waiter gave up: remove its ticket from the queue
-- Returns {released ("1" or "0"), reserved_cost, balance_after}, "" when unknown.

local state_key, inflight_key, inflight_cost_key = KEYS[1], KEYS[2], KEYS[3]
local queue_key, ticket_cost_key, ticket_expiry_key = KEYS[4], KEYS[5], KEYS[6]
local id = ARGV[1]
local mode = ARGV[2]

if mode == 'ticket' then
    local removed = redis.call('ZREM', queue_key, id)
    redis.call('ZREM', ticket_expiry_key, id)
    redis.call('HDEL', ticket_cost_key, id)
    return {tostring(removed), '', ''}
end

local reserved_cost = tonumber(redis.call('HGET', inflight_cost_key, id))
if not reserved_cost then
    -- Already reconciled or expired: nothing to give back.
    return {'0', '', ''}
end
redis.call('ZREM', inflight_key, id)
redis.call('HDEL', inflight_cost_key, id)
if mode ~= 'refund' then
    return {'1', format_number(reserved_cost), ''}
end


-- Refund: project the balance to now, then add the cost back within the cap.

local now = redis_now_ms()
local fields = redis.call('HMGET', state_key, 'balance', 'next_refill_ms', 'refill_rate', 'refill_interval_ms')
if not fields[1] then
    return {'1', format_number(reserved_cost), ''}
end
local balance = tonumber(fields[1])
local next_refill = tonumber(fields[2])
local refill_rate = tonumber(fields[3])
local interval = tonumber(fields[4])
local cap = 60 * refill_rate

balance, next_refill = project_balance(balance, next_refill, refill_rate, interval, now)
balance = math.max(balance, math.min(cap, balance + reserved_cost))

redis.call('HSET', state_key, 'balance', format_number(balance), 'next_refill_ms', next_refill)
return {'1', format_number(reserved_cost), format_number(balance)}
