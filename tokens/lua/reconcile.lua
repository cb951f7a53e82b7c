-- Reconcile the ledger with a Keepa response, and close or keep the reservation it answered.
--
-- Units: tokens are floats, times are Redis server milliseconds, Keepa's
-- timestamp is Keepa server milliseconds, the refill rate is tokens per minute.
--
-- tokensLeft already includes the cost of every call Keepa has processed, but
-- not of calls still in flight, so the new balance is tokensLeft minus the
-- reservations still in flight. A reading older than the last one applied
-- leaves the balance alone, because a newer reading has already counted more
-- calls. Between two refills Keepa's balance only falls, so of two readings in
-- the same refill period the lower one is the newer, whatever their
-- timestamps say: a response may be stamped after a later call was charged.
--
-- KEYS: state hash, in-flight expiry zset, in-flight cost hash, learned cost hash
-- ARGV: reservation id ("" for none), close ("1" removes the reservation from
--       the in-flight set), has_reading ("1" or "0"), tokens_left, refill_in_ms,
--       refill_rate, keepa_timestamp_ms ("" when unknown), refill_interval_ms
--       (stored for later projections),
--       kind ("" to learn nothing), units, tokens_consumed ("" when unknown),
--       is_sync ("1" records the sync time)
-- Returns {outcome, balance_before, balance_after, drift, old_refill_rate, in_flight_total, reserved_cost}
-- where outcome is "applied", "stale" or "no_reading", and a field is "" when unknown.

local state_key, inflight_key, inflight_cost_key, cost_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]

local id = ARGV[1]
local close = ARGV[2] == '1'
local has_reading = ARGV[3] == '1'
local tokens_left = tonumber(ARGV[4])
local refill_in = tonumber(ARGV[5])
local refill_rate = tonumber(ARGV[6])
local keepa_timestamp = tonumber(ARGV[7])
local configured_interval = tonumber(ARGV[8])
local kind = ARGV[9]
local units = tonumber(ARGV[10])
local tokens_consumed = tonumber(ARGV[11])
local is_sync = ARGV[12] == '1'

-- Two readings whose next refills lie closer than this many ms (or half the
-- refill interval, if less) fall in the same refill period. The bound keeps a
-- ledger configured for Keepa's one-minute refill right against a server that
-- refills faster.
local SAME_PERIOD_TOLERANCE_MS = 1000

-- A learned per-unit cost follows a higher observation at once and a lower
-- one by this fraction per observation, so estimates err on the safe side.
local DECREASE_WEIGHT = 0.25

local now = redis_now_ms()


-- 1. Drop expired reservations (spent: Keepa may have charged them).

drop_expired_reservations(inflight_key, inflight_cost_key, now)


-- 2. Project the stored balance to now, as the reserve script does.

local fields = redis.call('HMGET', state_key, 'balance', 'next_refill_ms', 'refill_rate', 'refill_interval_ms',
    'keepa_timestamp_ms', 'reading_refill_due_ms', 'reading_tokens_left')
local balance = tonumber(fields[1])
local next_refill = tonumber(fields[2])
local old_rate = tonumber(fields[3])
local interval = tonumber(fields[4]) or configured_interval
local last_timestamp = tonumber(fields[5])
local last_refill_due = tonumber(fields[6])
local last_tokens_left = tonumber(fields[7])

if balance then
    balance, next_refill = project_balance(balance, next_refill, old_rate, interval, now)
end


-- 3. Close the reservation of the call that this response belongs to. Closing never refunds:
--    a reading puts the balance right, and without one the call may have been charged.

local reserved_cost = nil
if id ~= '' then
    reserved_cost = tonumber(redis.call('HGET', inflight_cost_key, id))
    if close then
        redis.call('ZREM', inflight_key, id)
        redis.call('HDEL', inflight_cost_key, id)
    end
end

local in_flight_total = 0
for _, value in ipairs(redis.call('HVALS', inflight_cost_key)) do
    in_flight_total = in_flight_total + tonumber(value)
end


-- 4. Learn the cost per unit of this kind of call.

if kind ~= '' and tokens_consumed and units and units > 0 then
    local observed = tokens_consumed / units
    local learned = tonumber(redis.call('HGET', cost_key, kind))
    if not learned or observed >= learned then
        learned = observed
    else
        learned = learned + DECREASE_WEIGHT * (observed - learned)
    end
    redis.call('HSET', cost_key, kind, format_number(learned))
end


-- 5. Apply the reading, unless a newer one was applied already.

if not has_reading then
    return {'no_reading', format_number(balance), format_number(balance), '', format_number(old_rate),
            format_number(in_flight_total), format_number(reserved_cost)}
end
-- The Keepa time of the refill that ends this reading's refill period.
local refill_due = nil
if keepa_timestamp and refill_in and refill_in > 0 then
    refill_due = keepa_timestamp + refill_in
end

local stale = false
if balance and refill_due and last_refill_due and refill_rate == old_rate then
    if math.abs(refill_due - last_refill_due) < math.min(interval / 2, SAME_PERIOD_TOLERANCE_MS) then
        stale = tokens_left > last_tokens_left
    else
        stale = refill_due < last_refill_due
    end
elseif balance and keepa_timestamp and last_timestamp then
    stale = keepa_timestamp < last_timestamp
end
if stale then
    return {'stale', format_number(balance), format_number(balance), '', format_number(old_rate),
            format_number(in_flight_total), format_number(reserved_cost)}
end

refill_rate = refill_rate or old_rate or 0
local balance_after = tokens_left - in_flight_total
if balance and keepa_timestamp and last_timestamp and keepa_timestamp == last_timestamp then
    -- Two readings from the same millisecond: the lower one has counted more calls.
    balance_after = math.min(balance_after, balance)
end

-- Drift: how far the ledger was from the reading, after allowing for the
-- difference between this call's reservation and its actual cost.
local drift = nil
if balance then
    local expected = balance
    if reserved_cost and tokens_consumed then
        expected = balance + reserved_cost - tokens_consumed
    end
    drift = balance_after - expected
end

-- Without refillIn the next refill is assumed a full interval away, which
-- can only under-project the balance.
local next_refill_after = now + configured_interval
if refill_in and refill_in > 0 then
    -- One more millisecond, because refillIn is rounded to whole milliseconds.
    next_refill_after = now + refill_in + 1
end

redis.call('HSET', state_key,
    'balance', format_number(balance_after),
    'next_refill_ms', next_refill_after,
    'refill_rate', format_number(refill_rate),
    'refill_interval_ms', configured_interval,
    'reading_tokens_left', format_number(tokens_left),
    'reading_ms', now)
if keepa_timestamp then
    redis.call('HSET', state_key, 'keepa_timestamp_ms', keepa_timestamp)
end
if refill_due then
    redis.call('HSET', state_key, 'reading_refill_due_ms', refill_due)
else
    redis.call('HDEL', state_key, 'reading_refill_due_ms')
end
if is_sync then
    redis.call('HSET', state_key, 'last_sync_ms', now)
end

return {'applied', format_number(balance), format_number(balance_after), format_number(drift),
        format_number(old_rate), format_number(in_flight_total), format_number(reserved_cost)}
