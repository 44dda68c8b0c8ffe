#!/bin/sh
# A throw-away PKI for tls_test, made at test time with the openssl CLI (tools/install_deps.sh installs it):
#   ca.pem/ca.key            the test CA
#   server.pem/server.key    signed by it, for localhost, 127.0.0.1 and ::1 (serverAuth)
#   client.pem/client.key    signed by it (clientAuth)
#   rogue-ca.pem, rogue-client.pem/.key   a second CA the server does not trust, and a client certificate of it
# Usage: make_test_pki.sh OUT_DIR    (EC P-256 keys, valid for 2 days: nothing here outlives the test run)
set -eu
out=$1
mkdir -p "$out"
cd "$out"
days=2

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; }

ca() {  # ca NAME
  key "$1"
  openssl req -new -x509 -key "$1.key" -out "$1.pem" -days $days -subj "/CN=zeroinfer test $1" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
}

leaf() {  # leaf NAME CA CN EXTENSIONS
  key "$1"
  openssl req -new -key "$1.key" -out "$1.csr" -subj "/CN=$3"
  printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" "$4" \
    > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -set_serial "0x$(openssl rand -hex 8)" \
    -days $days -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}

ca ca
ca rogue-ca
leaf server ca localhost "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1
extendedKeyUsage=serverAuth"
leaf client ca "zeroinfer test client" "extendedKeyUsage=clientAuth"
leaf rogue-client rogue-ca "zeroinfer rogue client" "extendedKeyUsage=clientAuth"
