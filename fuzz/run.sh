#!/usr/bin/env bash
# Fuzzes Ferrygate's input parsers with cargo-fuzz (libFuzzer), each target for
# a bounded time. NOT part of CI (.ci/run never calls it): run it by hand, for
# example before a release or after touching destinations, templates or cookies.
#
#   fuzz/run.sh                              # every target, 60 s each
#   FUZZ_SECONDS=600 fuzz/run.sh cookie      # one target, ten minutes
#   FUZZ_SANITIZER=none fuzz/run.sh          # faster, panics only (no ASan)
#
# Only the stable toolchain is assumed; cargo-fuzz passes nightly-only flags
# (-Zsanitizer=address and friends), which RUSTC_BOOTSTRAP=1 unlocks on stable.
# Needs a C++ compiler (libfuzzer-sys builds libFuzzer) and crates.io the first
# time. A crash is saved under fuzz/artifacts/<target>/; replay it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/<file>
# The exit status is 0 only if every target ran its time without a finding.
set -uo pipefail
cd "$(dirname "$0")/.." # cargo fuzz expects to run beside ./fuzz

FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
FUZZ_SANITIZER="${FUZZ_SANITIZER:-address}"
case "$FUZZ_SECONDS" in
  '' | *[!0-9]*)
    echo "FUZZ_SECONDS must be a whole number of seconds, not '$FUZZ_SECONDS'" >&2
    exit 2
    ;;
esac
export RUSTC_BOOTSTRAP=1

ALL_TARGETS=(destination template login_body cookie request_target)
if [ "$#" -gt 0 ]; then TARGETS=("$@"); else TARGETS=("${ALL_TARGETS[@]}"); fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is missing: installing it" >&2
  cargo install cargo-fuzz --locked || exit 1
fi

# Fuzz the dependency versions the workspace is tested with.
[ -f fuzz/Cargo.lock ] || cp Cargo.lock fuzz/Cargo.lock

# Seed corpora, once: the destination attack corpus (its \\, \xHH and \u{..}
# escapes decoded when python3 is there) and a few template and cookie shapes.
seed() { mkdir -p "fuzz/corpus/$1" && printf '%b' "$3" >"fuzz/corpus/$1/seed-$2"; }
if [ ! -d fuzz/corpus/destination ] && [ -f tests/data/destinations.txt ]; then
  mkdir -p fuzz/corpus/destination
  if command -v python3 >/dev/null 2>&1; then
    python3 - tests/data/destinations.txt fuzz/corpus/destination <<'PY'
import re, sys
src, out = sys.argv[1], sys.argv[2]
unescape = lambda s: re.sub(r"\\\\|\\x([0-9a-fA-F]{2})|\\u\{([0-9a-fA-F]+)\}",
    lambda m: "\\" if m.group(0) == "\\\\" else chr(int(m.group(1) or m.group(2), 16)), s)
n = 0
for line in open(src, encoding="utf-8"):
    verdict, _, value = line.rstrip("\n").partition(" ")
    if verdict in ("allow", "refuse"):
        open(f"{out}/seed-{n}", "wb").write(unescape(value).encode("utf-8", "surrogatepass"))
        n += 1
PY
  else
    n=0
    while IFS= read -r line; do
      case "$line" in
        'allow '* | 'refuse '*) printf '%s' "${line#* }" >"fuzz/corpus/destination/seed-$n" && n=$((n + 1)) ;;
      esac
    done <tests/data/destinations.txt
  fi
fi
if [ ! -d fuzz/corpus/template ]; then
  seed template 0 'https://auth.example/u/{{USEREMAIL}}/check?p={{USERPASSWORD}}&o={{ORGID}}\0a+b/../@x&y=1#?'
  seed template 1 'Bearer {{USERPASSWORD}}\0a\r\nX-Admin: 1'
  seed template 2 'org-{{ORGID}} {{DEVICEOS}} {{USERID\0<p>&amp;"x"</p>'
fi
if [ ! -d fuzz/corpus/cookie ]; then
  seed cookie 0 'other=1; fg=abc; fg_state=def.%2Fmy-portal\0def'
  seed cookie 1 'fg="quoted"; ; =x; fg_state\0/my-portal/x?a=1&b=2'
fi
if [ ! -d fuzz/corpus/login_body ]; then
  seed login_body 0 'content-type: application/json; charset=utf-8\naccept: text/html;q=0.9, application/json\nX_Ferrygate_User: admin\nx-ferrygate-org-id: 1'
fi

# Build every target first, so each time budget is spent fuzzing, not compiling.
if ! cargo fuzz build --sanitizer "$FUZZ_SANITIZER"; then
  echo "fuzz: build failed" >&2
  exit 1
fi

status=0
SUMMARY=()
for target in "${TARGETS[@]}"; do
  started=$SECONDS
  cargo fuzz run --sanitizer "$FUZZ_SANITIZER" "$target" -- \
    -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048
  rc=$?
  line="fuzz: target=$target seconds=$((SECONDS - started)) exit=$rc"
  echo "$line"
  SUMMARY+=("$line")
  [ "$rc" -eq 0 ] || status=1
done

echo "== fuzz summary (FUZZ_SECONDS=$FUZZ_SECONDS, sanitizer=$FUZZ_SANITIZER) =="
printf '%s\n' "${SUMMARY[@]}"
exit "$status"
