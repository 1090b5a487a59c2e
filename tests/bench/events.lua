-- events.lua - wrk script of the admin API's query benchmark
-- (tests/bench/run-api): filtered pages of GET /v1/events.
--
--   wrk -s tests/bench/events.lua URL -- KEYS FROM TO PACE_MS query
--   wrk -s tests/bench/events.lua URL -- KEYS FROM TO PACE_MS paths FILE
--
-- KEYS is a file of "TENANT_ID KEY" lines, one API key per tenant. In
-- "query" mode each request is a first page of a random tenant's events of
-- one field in a time window:
--     GET /v1/events?field=F&since=S&until=U&limit=50
-- with that tenant's key: the tenant is uniform over KEYS, the field drawn as
-- often as events-gen.c writes it (clients ask most for what is most common),
-- the window 1 hour, 1 day, 7 days, 30 days or all of FROM..TO (Unix
-- seconds, where the events lie), placed uniformly inside FROM..TO.
-- In "paths" mode the requests cycle through FILE, lines "TENANT_ID PATH"
-- (tests/bench/run-api writes page-2 paths there, cursors included).
-- PACE_MS 0 sends each connection's next request as soon as the answer is in
-- (wrk's usual closed loop: the server is as busy as it can be); otherwise a
-- connection waits a random time (exponential, PACE_MS on average) first,
-- so that C connections offer about C * 1000 / PACE_MS requests a second.
--
-- done() prints one line that tests/bench/run-api reads:
--   BENCH requests=.. ok=.. full=.. rate=.. p50_us=.. p90_us=.. p99_us=..
--         p999_us=.. max_us=.. errors=.. statuses=200:..,..
-- full counts 200s whose page had a next_cursor (50 events and more to come);
-- errors are wrk's socket errors (connect, read, write, timeout).

local FIELDS = {
    {"messages", 380}, {"messaging_seen", 200}, {"comments", 150},
    {"message_reactions", 90}, {"message_echoes", 80}, {"mentions", 25},
    {"messaging_postbacks", 25}, {"story_insights", 15}, {"live_comments", 10},
    {"messaging_referral", 10}, {"messaging_handover", 5}, {"standby", 5},
    {"messaging_optins", 5},
}
local WINDOWS = {3600, 86400, 7 * 86400, 30 * 86400, 0} -- 0: the whole span

local threads = {}

function setup(thread)
    thread:set("id", #threads)
    table.insert(threads, thread)
end

local keys, nkeys, tenants = {}, 0, {}
local from, to, pace, mode
local paths, npaths, next_path = {}, 0, 0
ok, full, responses = 0, 0, 0
by_status = {}

function init(args)
    local keyfile
    keyfile, from, to, pace, mode = args[1], tonumber(args[2]), tonumber(args[3]),
        tonumber(args[4]), args[5]
    if not keyfile or not from or not to or to <= from or not pace or
        (mode ~= "query" and mode ~= "paths") then
        error("usage: wrk -s events.lua URL -- KEYS FROM TO PACE_MS query|paths [FILE]")
    end
    if pace == 0 then delay = nil end
    for line in io.lines(keyfile) do
        local t, k = line:match("^(%d+) (%S+)$")
        if t then
            keys[tonumber(t)] = k
            nkeys = nkeys + 1
        end
    end
    assert(nkeys > 0, keyfile .. " holds no keys")
    if mode == "paths" then
        local file = args[6]
        assert(file, "paths needs a FILE")
        for line in io.lines(file) do
            local t, p = line:match("^(%d+) (%S+)$")
            if t then
                npaths = npaths + 1
                paths[npaths] = {keys[tonumber(t)], p}
            end
        end
        assert(npaths > 0, file .. " holds no paths")
        next_path = (id * 7919) % npaths
    end
    math.randomseed(os.time() * 1000 + id)
    for t in pairs(keys) do tenants[#tenants + 1] = t end
    table.sort(tenants)
end

local function pick_field()
    local x = math.random(0, 999)
    for _, f in ipairs(FIELDS) do
        if x < f[2] then return f[1] end
        x = x - f[2]
    end
    return FIELDS[1][1]
end

function delay()
    return math.floor(-math.log(1 - math.random()) * pace + 0.5)
end

function request()
    local key, path
    if mode == "paths" then
        next_path = next_path % npaths + 1
        key, path = paths[next_path][1], paths[next_path][2]
    else
        key = keys[tenants[math.random(#tenants)]]
        local w = WINDOWS[math.random(#WINDOWS)]
        if w == 0 or w > to - from then w = to - from end
        local since = from + math.random(0, to - from - w)
        path = string.format("/v1/events?field=%s&since=%d&until=%d&limit=50", pick_field(), since,
            since + w)
    end
    return wrk.format("GET", path, {["Authorization"] = "Bearer " .. key})
end

function response(status, headers, body)
    responses = responses + 1
    by_status[status] = (by_status[status] or 0) + 1
    if status == 200 then
        ok = ok + 1
        if not body:find('"next_cursor":null', 1, true) then full = full + 1 end
    end
end

function done(summary, latency, requests)
    local total = {ok = 0, full = 0, responses = 0}
    local merged = {}
    for _, t in ipairs(threads) do
        for k in pairs(total) do total[k] = total[k] + t:get(k) end
        for s, n in pairs(t:get("by_status")) do merged[s] = (merged[s] or 0) + n end
    end
    local parts = {}
    for s, n in pairs(merged) do parts[#parts + 1] = s .. ":" .. n end
    table.sort(parts)
    local e = summary.errors
    local secs = summary.duration / 1e6
    print(string.format("BENCH requests=%d ok=%d full=%d rate=%.1f p50_us=%d p90_us=%d " ..
        "p99_us=%d p999_us=%d max_us=%d errors=%d statuses=%s", total.responses, total.ok,
        total.full, summary.requests / secs, latency:percentile(50), latency:percentile(90),
        latency:percentile(99), latency:percentile(99.9), latency.max,
        e.connect + e.read + e.write + e.timeout, table.concat(parts, ",")))
end
