-- Read the ledger without changing it, for status displays.
--
-- Units: tokens are floats, times are Redis server milliseconds, the refill
-- rate is tokens per minute.
--
-- KEYS: state hash, in-flight expiry zset, in-flight cost hash, queue zset,
--       ticket cost hash, ticket expiry zset, learned cost hash
-- Returns a flat list of field, value pairs; values are strings, "" when unknown.

local state_key, inflight_key, inflight_cost_key = KEYS[1], KEYS[2], KEYS[3]
local queue_key, ticket_cost_key, ticket_expiry_key, cost_key = KEYS[4], KEYS[5], KEYS[6], KEYS[7]

local now = redis_now_ms()
local result = {'now_ms', tostring(now)}

local fields = {'balance', 'next_refill_ms', 'refill_rate', 'refill_interval_ms', 'reading_tokens_left',
                'reading_ms', 'keepa_timestamp_ms', 'last_sync_ms'}
local values = redis.call('HMGET', state_key, unpack(fields))
for index, name in ipairs(fields) do
    table.insert(result, name)
    table.insert(result, values[index] or '')
end


-- Project the balance to now; the stored state is left as it is.

local balance = tonumber(values[1])
local projected = balance
local next_refill = tonumber(values[2])
if balance then
    projected, next_refill = project_balance(balance, next_refill, tonumber(values[3]), tonumber(values[4]), now)
end
table.insert(result, 'projected_balance')
table.insert(result, format_number(projected))
table.insert(result, 'projected_next_refill_ms')
table.insert(result, format_number(next_refill))


-- Count live reservations and waiters; expired ones are left for the next write to drop.

local in_flight_count, in_flight_total = 0, 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', inflight_key, '(' .. now, '+inf')) do
    local reserved = tonumber(redis.call('HGET', inflight_cost_key, id))
    if reserved then
        in_flight_count = in_flight_count + 1
        in_flight_total = in_flight_total + reserved
    end
end
local waiter_count, waiting_total = 0, 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', ticket_expiry_key, '(' .. now, '+inf')) do
    if redis.call('ZSCORE', queue_key, id) then
        waiter_count = waiter_count + 1
        waiting_total = waiting_total + (tonumber(redis.call('HGET', ticket_cost_key, id)) or 0)
    end
end
for _, pair in ipairs({{'in_flight_count', in_flight_count}, {'in_flight_total', in_flight_total},
                       {'waiter_count', waiter_count}, {'waiting_total', waiting_total}}) do
    table.insert(result, pair[1])
    table.insert(result, format_number(pair[2]))
end


-- Learned costs per unit, as "cost:<kind>" fields.

local learned = redis.call('HGETALL', cost_key)
for index = 1, #learned, 2 do
    table.insert(result, 'cost:' .. learned[index])
    table.insert(result, learned[index + 1])
end
return result
