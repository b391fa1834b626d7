-- wrk script for the POST workload: every request carries a 1 KiB body
-- (printable JSON-ish text, so it is recorded as text, not base64).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local filler = string.rep("0123456789abcdef", 64)  -- 1024 bytes
-- {"data":"<filler minus the 11 bytes of framing>"} is exactly 1024 bytes.
wrk.body = '{"data":"' .. string.sub(filler, 1, 1024 - 11) .. '"}'
