-- Helpers shared by every ledger script. tokens/scripts.py puts this file in
-- front of each script before registering it, so each script stays one atomic call.
--
-- Units: tokens are floats, times are Redis server milliseconds, the refill
-- rate is tokens per minute, and a full balance is 60 minutes of refill.

-- Format a number for Redis and for the caller without losing float precision. nil gives "".
local function format_number(value)
    if value == nil then
        return ''
    end
    return string.format('%.17g', value)
end

-- The current Redis server time in milliseconds, so host clocks never matter.
local function redis_now_ms()
    local clock = redis.call('TIME')
    return tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
end

-- Roll a stored balance forward over the refills due by `now`. Returns the
-- balance and the time of the next refill. Refills stop at the cap, and a
-- balance already above the cap (a large first reading) is kept as it is.
local function project_balance(balance, next_refill, refill_rate, interval, now)
    if now < next_refill then
        return balance, next_refill
    end
    local refills = math.floor((now - next_refill) / interval) + 1
    local cap = 60 * refill_rate
    if balance < cap then
        balance = math.min(cap, balance + refills * refill_rate * interval / 60000)
    end
    return balance, next_refill + refills * interval
end

-- Drop the reservations whose expiry has passed. They stay spent, because
-- Keepa may have charged them; the next reading puts the balance right.
local function drop_expired_reservations(inflight_key, inflight_cost_key, now)
    for _, dead_id in ipairs(redis.call('ZRANGEBYSCORE', inflight_key, '-inf', now)) do
        redis.call('ZREM', inflight_key, dead_id)
        redis.call('HDEL', inflight_cost_key, dead_id)
    end
end

