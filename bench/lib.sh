# bench/lib.sh - what the bench scripts share (sourced, not run).

free_port() {   # $1 = tcp|udp: a port free on 127.0.0.1 now
  python3 - "$1" <<'PY'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if sys.argv[1] == "tcp" else socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])
PY
}
