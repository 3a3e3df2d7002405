#!/bin/bash
# API server CPU per status write: server-side apply (what the operator sends) vs JSON merge
# patch, 300 writes each, alternating, on a cluster of scripts/cluster with the CRD and 300
# LiveStreams s1..s300 in namespace bench (docs/benchmarks.md, "Operator at scale"). One curl,
# so one TLS handshake, per write: both figures include it. Setup, from the repository root:
#
#   eval "$(scripts/cluster up)"
#   kubectl apply --server-side -f crds/livestream.yaml && kubectl create ns bench
#   for i in $(seq 1 300); do printf 'apiVersion: streamfleet.io/v1alpha1\nkind: LiveStream\nmetadata: {name: s%d, namespace: bench}\nspec: {}\n---\n' $i; done | kubectl apply --server-side -f -
#   docs/benchmarks/operator-scale/status-write-cost.sh; scripts/cluster down
set -euo pipefail
cd "$(dirname "$0")/../../.."
D=target/cluster
SERVER=$(grep server: $D/kubeconfig | awk '{print $2}')
TOKEN=$(cut -d, -f1 $D/tokens.csv | head -1)
APID=$(pgrep -f "kube-apiserver.*$PWD/$D" | head -1)
cpu() { awk '{print $14+$15}' /proc/$APID/stat; }
status() { # phase, reason, viewers
  printf '{"phase":"%s","observedGeneration":1,"playbackName":"x","publishKeySecret":"x-publish-key","viewers":%d,"conditions":[{"type":"Ready","status":"True","reason":"Registered","message":"in the registry: publish to rtmp://<edge>/live/<key in Secret x-publish-key>, play rtmp://<edge>/live/x","observedGeneration":1,"lastTransitionTime":"2026-12-06T22:00:00Z"},{"type":"Live","status":"%s","reason":"%s","message":"publisher 192.0.2.9:1935 connected to edge bench-edge","observedGeneration":1,"lastTransitionTime":"2026-12-06T22:00:1%dZ"},{"type":"EncoderHealthy","status":"Unknown","reason":"NotMeasured","message":"the edge has not reported the encoder media yet","observedGeneration":1,"lastTransitionTime":"2026-12-06T22:00:00Z"}]}' "$1" "$3" "$4" "$2" "$5"
}
run() { # mode round
  local mode=$1 r=$2 c0 c1 t0 t1
  c0=$(cpu); t0=$(date +%s.%N)
  for i in $(seq 1 300); do
    if [ $((r % 2)) = 0 ]; then st=$(status Live Publishing $r True $((r % 10))); else st=$(status Ready NoPublisher $r False $((r % 10))); fi
    if [ $mode = apply ]; then
      body="{\"apiVersion\":\"streamfleet.io/v1alpha1\",\"kind\":\"LiveStream\",\"status\":$st}"
      ct=application/apply-patch+yaml; q="fieldManager=streamfleet-operator&force=true"
    else
      body="{\"status\":$st}"; ct=application/merge-patch+json; q="fieldManager=streamfleet-operator"
    fi
    curl -s -o /dev/null -w '%{http_code}\n' --cacert $D/ca.crt -H "Authorization: Bearer $TOKEN" -H "Content-Type: $ct" \
      -X PATCH "$SERVER/apis/streamfleet.io/v1alpha1/namespaces/bench/livestreams/s$i/status?$q" --data-binary "$body"
  done | sort | uniq -c | tr '\n' ' '
  c1=$(cpu); t1=$(date +%s.%N)
  echo "$mode round $r: API server CPU $(echo "($c1-$c0)*10/300" | bc -l | cut -c1-5) ms per write, wall $(echo "$t1-$t0" | bc | cut -c1-5) s"
}
for r in 1 2 3 4; do run apply $r; run merge $((r+10)); done
