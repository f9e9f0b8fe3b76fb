# Sourced by the test scripts: count checks and end with the summary line
# "N passed, M failed" (exit status 1 if anything failed).
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
ko() { fail=$((fail + 1)); echo "FAIL $1"; }
finish() {
    echo "$pass passed, $fail failed"
    [ "$fail" -eq 0 ]
}
