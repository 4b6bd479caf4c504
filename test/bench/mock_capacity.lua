-- wrk script for test/bench/mock_capacity.sh: POST /payouts of the http
-- driver protocol, each with a unique idempotency key (thread id + counter),
-- so that every request is an effective payout at the mock.
local threads = {}
local counter = 0
local tid = 0

function setup(thread)
	tid = tid + 1
	thread:set("tid", tid)
	table.insert(threads, thread)
end

function init(args)
	counter = 0
	prefix = "bench-" .. tostring(tid) .. "-" .. tostring(os.time()) .. "-"
	auth = args[1]
end

function request()
	counter = counter + 1
	local id = prefix .. counter
	local body = '{"id":"' .. id .. '","account_id":"acct' .. (counter % 1000) ..
		'","amount":' .. (100 + counter % 900) ..
		',"currency":"USD","channel":"bank","destination":{"iban":"DE89370400440532013000"}}'
	local headers = {
		["Content-Type"] = "application/json",
		["Idempotency-Key"] = id,
	}
	if auth ~= nil then
		headers["Authorization"] = "Bearer " .. auth
	end
	return wrk.format("POST", "/payouts", headers, body)
end

function done(summary, latency, requests)
	local e = summary.errors
	io.write(string.format("wrk: requests=%d duration_us=%d non2xx=%d connect=%d read=%d write=%d timeout=%d\n",
		summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout))
	io.write(string.format("wrk: latency_p50_us=%d latency_p99_us=%d\n",
		latency:percentile(50), latency:percentile(99)))
end
