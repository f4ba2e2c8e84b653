#!/usr/bin/env bash
# Makes a throw-away certificate authority and a server certificate it signed for 127.0.0.1
# and localhost, in DIR: ca.crt, server.crt, server.key (for the tests' TLS servers: rustls and
# webpki refuse a self-signed certificate used as its own CA); and a client certificate it
# signed, client.crt and client.key (for DICOM TLS with client certificates).
set -euo pipefail
dir=$1
mkdir -p "$dir"
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${ec[@]}" -days 2 -subj /CN=radport-test-ca \
  -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
openssl req "${ec[@]}" -subj /CN=127.0.0.1 -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n' > "$dir/server.ext"
openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
  -days 2 -extfile "$dir/server.ext" -out "$dir/server.crt" 2>/dev/null
rm -f "$dir/server.csr" "$dir/server.ext" "$dir/ca.srl"
openssl req "${ec[@]}" -subj /CN=radport-test-client -keyout "$dir/client.key" -out "$dir/client.csr" 2>/dev/null
printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n' > "$dir/client.ext"
openssl x509 -req -in "$dir/client.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
  -days 2 -extfile "$dir/client.ext" -out "$dir/client.crt" 2>/dev/null
rm -f "$dir/client.csr" "$dir/client.ext" "$dir/ca.srl"
