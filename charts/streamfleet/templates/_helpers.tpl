{{/*
Names, labels, images and the Redis/relay wiring shared by every template.
*/}}

{{- define "streamfleet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The prefix of every object name; component names are appended, so keep room for them. */}}
{{- define "streamfleet.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "streamfleet.namespace" -}}
{{- .Release.Namespace }}
{{- end }}

{{- define "streamfleet.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "streamfleet.labels" -}}
helm.sh/chart: {{ include "streamfleet.chart" . }}
{{ include "streamfleet.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: streamfleet
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "streamfleet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "streamfleet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Component labels: call with (dict "ctx" $ "component" "edge"). */}}
{{- define "streamfleet.componentLabels" -}}
{{ include "streamfleet.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "streamfleet.componentSelectorLabels" -}}
{{ include "streamfleet.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* image reference: call with (dict "ctx" $ "image" .Values.edge.image "key" "edge.image").
The edge and operator images are not published anywhere, so they have no default: an install
without them fails here, before anything is applied, instead of pods in ImagePullBackOff. */}}
{{- define "streamfleet.image" -}}
{{- if not .image.repository -}}
{{- fail (printf "%s.repository is not set. The Streamfleet images are not published yet: build and push them (docs/deploy.md, \"Images and the Dockerfile\"), then install with --set edge.image.repository=REGISTRY/streamfleet-edge --set operator.image.repository=REGISTRY/streamfleet-operator" .key) -}}
{{- end -}}
{{- if .image.digest -}}
{{ .image.repository }}@{{ .image.digest }}
{{- else -}}
{{ .image.repository }}:{{ .image.tag | default .ctx.Chart.AppVersion }}
{{- end -}}
{{- end }}

{{- define "streamfleet.imagePullSecrets" -}}
{{- with .Values.global.imagePullSecrets -}}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* ---- object names ---------------------------------------------------------------- */}}
{{- define "streamfleet.edge.fullname" -}}{{ include "streamfleet.fullname" . }}-edge{{- end }}
{{- define "streamfleet.operator.fullname" -}}{{ include "streamfleet.fullname" . }}-operator{{- end }}
{{- define "streamfleet.redis.fullname" -}}{{ include "streamfleet.fullname" . }}-redis{{- end }}
{{- define "streamfleet.relay.secretName" -}}
{{- .Values.edge.relay.existingSecret | default (printf "%s-relay" (include "streamfleet.fullname" .)) }}
{{- end }}
{{- define "streamfleet.relay.secretKey" -}}
{{- if .Values.edge.relay.existingSecret }}{{ .Values.edge.relay.existingSecretKey }}{{ else }}relay-secret{{ end }}
{{- end }}
{{- define "streamfleet.keyHash.secretName" -}}
{{- .Values.keyHash.existingSecret | default (printf "%s-key-hash" (include "streamfleet.fullname" .)) }}
{{- end }}
{{- define "streamfleet.keyHash.secretKey" -}}
{{- if .Values.keyHash.existingSecret }}{{ .Values.keyHash.existingSecretKey }}{{ else }}key-hash-secret{{ end }}
{{- end }}
{{/* The key-hash secret as a file, for the operator and the edges (env, mount, volume). */}}
{{- define "streamfleet.keyHash.env" -}}
- name: STREAMFLEET_KEY_HASH_SECRET_FILE
  value: /etc/streamfleet/key-hash/secret
{{- end }}
{{- define "streamfleet.keyHash.volumeMount" -}}
- name: key-hash-secret
  mountPath: /etc/streamfleet/key-hash
  readOnly: true
{{- end }}
{{- define "streamfleet.keyHash.volume" -}}
- name: key-hash-secret
  secret:
    secretName: {{ include "streamfleet.keyHash.secretName" . }}
    defaultMode: 0440
    items:
      - key: {{ include "streamfleet.keyHash.secretKey" . }}
        path: secret
{{- end }}
{{- define "streamfleet.api.secretName" -}}
{{- .Values.edge.api.existingSecret | default (printf "%s-api" (include "streamfleet.fullname" .)) }}
{{- end }}
{{- define "streamfleet.api.secretKey" -}}
{{- if .Values.edge.api.existingSecret }}{{ .Values.edge.api.existingSecretKey }}{{ else }}api-token{{ end }}
{{- end }}

{{- define "streamfleet.edge.serviceAccountName" -}}
{{- if .Values.edge.serviceAccount.create }}
{{- .Values.edge.serviceAccount.name | default (include "streamfleet.edge.fullname" .) }}
{{- else }}
{{- .Values.edge.serviceAccount.name | default "default" }}
{{- end }}
{{- end }}

{{- define "streamfleet.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- .Values.operator.serviceAccount.name | default (include "streamfleet.operator.fullname" .) }}
{{- else }}
{{- .Values.operator.serviceAccount.name | default "default" }}
{{- end }}
{{- end }}

{{/* ---- Redis wiring ---------------------------------------------------------------- */}}

{{/* The URL edges and the operator dial. The password never goes in it: it is a mounted file. */}}
{{- define "streamfleet.redis.url" -}}
{{- $ns := include "streamfleet.namespace" . }}
{{- if and .Values.redis.bundled (eq .Values.redis.mode "sentinel") }}
{{- $s := .Values.redis.sentinel }}
{{- $svc := include "streamfleet.sentinel.fullname" . }}
{{- $hosts := list }}
{{- range $i := until 3 }}
{{- $hosts = append $hosts (printf "%s-%d.%s.%s.svc:%d" $svc $i $svc $ns (int $s.port)) }}
{{- end }}
{{- printf "redis+sentinel://%s/%s/0?replica_ack_ms=%d" (join "," $hosts) $s.masterName (int $s.replicaAckMs) }}
{{- else if .Values.redis.bundled }}
{{- printf "redis://%s.%s.svc:%d/0" (include "streamfleet.redis.fullname" .) $ns (int .Values.redis.port) }}
{{- else if .Values.redis.external.sentinel.hosts }}
{{- $e := .Values.redis.external.sentinel }}
{{- $scheme := ternary "rediss+sentinel" "redis+sentinel" (eq (toString $e.tls) "true") }}
{{- $master := required "redis.external.sentinel.masterName is required with redis.external.sentinel.hosts" $e.masterName }}
{{- printf "%s://%s/%s/%d?replica_ack_ms=%d&sentinel_auth=%s" $scheme (join "," $e.hosts) $master (int $e.db) (int $e.replicaAckMs) $e.auth }}
{{- else }}
{{- required "redis.external.url (or redis.external.sentinel.hosts) is required when redis.bundled is false" .Values.redis.external.url }}
{{- end }}
{{- end }}

{{/* Sentinel mode: the pods' stable DNS names (headless Services). */}}
{{- define "streamfleet.sentinel.fullname" -}}{{ include "streamfleet.fullname" . }}-sentinel{{- end }}
{{- define "streamfleet.redis.headless" -}}{{ include "streamfleet.redis.fullname" . }}-headless{{- end }}
{{- define "streamfleet.sentinel.mode" -}}{{ if and .Values.redis.bundled (eq .Values.redis.mode "sentinel") }}true{{ end }}{{- end }}

{{/* Sentinel mode anti-affinity for one component: spread over nodes, soft or hard. */}}
{{- define "streamfleet.sentinel.antiAffinity" -}}
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (include "streamfleet.componentSelectorLabels" (dict "ctx" .ctx "component" .component) | fromYaml)) }}
podAntiAffinity:
{{- if eq .ctx.Values.redis.sentinel.antiAffinity "hard" }}
  requiredDuringSchedulingIgnoredDuringExecution:
    {{- list $term | toYaml | nindent 4 }}
{{- else }}
  preferredDuringSchedulingIgnoredDuringExecution:
    {{- list (dict "weight" 100 "podAffinityTerm" $term) | toYaml | nindent 4 }}
{{- end }}
{{- end }}

{{/* Name of the Secret holding the Redis password, or "" when Redis has none. */}}
{{- define "streamfleet.redis.passwordSecret" -}}
{{- if .Values.redis.bundled }}
{{- if .Values.redis.auth.enabled }}
{{- .Values.redis.auth.existingSecret | default (include "streamfleet.redis.fullname" .) }}
{{- end }}
{{- else }}
{{- .Values.redis.external.existingSecret }}
{{- end }}
{{- end }}

{{- define "streamfleet.redis.passwordKey" -}}
{{- if .Values.redis.bundled }}
{{- if .Values.redis.auth.existingSecret }}{{ .Values.redis.auth.existingSecretPasswordKey }}{{ else }}redis-password{{ end }}
{{- else }}
{{- .Values.redis.external.existingSecretPasswordKey }}
{{- end }}
{{- end }}

{{/* Environment for a registry client (edge and operator). */}}
{{- define "streamfleet.redis.env" -}}
- name: STREAMFLEET_REDIS_URL
  value: {{ include "streamfleet.redis.url" . | quote }}
{{- if include "streamfleet.redis.passwordSecret" . }}
- name: STREAMFLEET_REDIS_PASSWORD_FILE
  value: /etc/streamfleet/redis/password
{{- end }}
{{- end }}

{{- define "streamfleet.redis.volumeMounts" -}}
{{- if include "streamfleet.redis.passwordSecret" . -}}
- name: redis-password
  mountPath: /etc/streamfleet/redis
  readOnly: true
{{- end }}
{{- end }}

{{- define "streamfleet.redis.volumes" -}}
{{- if include "streamfleet.redis.passwordSecret" . -}}
- name: redis-password
  secret:
    secretName: {{ include "streamfleet.redis.passwordSecret" . }}
    defaultMode: 0440
    items:
      - key: {{ include "streamfleet.redis.passwordKey" . }}
        path: password
{{- end }}
{{- end }}

{{/*
A Secret value generated once and kept: reuse the value already in the cluster (lookup), else
generate. Call with (dict "ctx" $ "name" "<secret>" "key" "<key>" "length" 48); returns base64.
Offline rendering (helm template, GitOps tools) cannot look up and generates a new value each
time: use an existingSecret there.
*/}}
{{- define "streamfleet.keptSecretValue" -}}
{{- $existing := lookup "v1" "Secret" (include "streamfleet.namespace" .ctx) .name }}
{{- if and $existing $existing.data (hasKey $existing.data .key) }}
{{- index $existing.data .key }}
{{- else }}
{{- randAlphaNum (int .length) | b64enc }}
{{- end }}
{{- end }}

{{/* ---- edge timing ----------------------------------------------------------------- */}}

{{/* preStop sleep + drain timeout + margin, unless set explicitly (never below the first two). */}}
{{- define "streamfleet.edge.terminationGracePeriodSeconds" -}}
{{- $floor := add (int .Values.edge.preStopSleepSeconds) (int .Values.edge.drainTimeoutSeconds) }}
{{- if kindIs "invalid" .Values.edge.terminationGracePeriodSeconds }}
{{- add $floor (int .Values.edge.terminationGraceMarginSeconds) }}
{{- else }}
{{- if lt (int .Values.edge.terminationGracePeriodSeconds) (int $floor) }}
{{- fail (printf "edge.terminationGracePeriodSeconds (%d) must be at least preStopSleepSeconds + drainTimeoutSeconds (%d), or edges are killed mid-drain" (int .Values.edge.terminationGracePeriodSeconds) (int $floor)) }}
{{- end }}
{{- int .Values.edge.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/* Effective minimum edge count (the HPA's floor when it is on). */}}
{{- define "streamfleet.edge.minReplicas" -}}
{{- if .Values.edge.autoscaling.enabled }}{{ int .Values.edge.autoscaling.minReplicas }}{{ else }}{{ int .Values.edge.replicaCount }}{{ end }}
{{- end }}

{{/* Namespace for monitoring objects: call with (dict "ctx" $ "ns" .Values.metrics.serviceMonitor.namespace). */}}
{{- define "streamfleet.monitoringNamespace" -}}
{{- .ns | default (include "streamfleet.namespace" .ctx) }}
{{- end }}

{{/* ---- edge TLS and PROXY protocol ---------------------------------------------------- */}}

{{/* The Secret holding the RTMPS pair: the user's, or the one cert-manager writes. */}}
{{- define "streamfleet.edge.tlsSecretName" -}}
{{- if .Values.edge.tls.certManager.enabled }}{{ include "streamfleet.edge.fullname" . }}-tls{{ else }}{{ .Values.edge.tls.existingSecret }}{{ end }}
{{- end }}

{{/* Fails on listener, certificate and PROXY protocol settings that cannot work. */}}
{{- define "streamfleet.edge.validateTransport" -}}
{{- $tls := .Values.edge.tls }}
{{- if and (not .Values.edge.rtmp.enabled) (not $tls.enabled) }}
{{- fail "edge.rtmp.enabled=false needs edge.tls.enabled=true: the edges would serve nothing" }}
{{- end }}
{{- if $tls.enabled }}
{{- if and $tls.existingSecret $tls.certManager.enabled }}
{{- fail "edge.tls: set either existingSecret or certManager.enabled, not both" }}
{{- end }}
{{- if not (or $tls.existingSecret $tls.certManager.enabled) }}
{{- fail "edge.tls.enabled needs a certificate: edge.tls.existingSecret (a kubernetes.io/tls Secret) or edge.tls.certManager.enabled" }}
{{- end }}
{{- if $tls.certManager.enabled }}
{{- if not $tls.certManager.issuerRef.name }}
{{- fail "edge.tls.certManager.issuerRef.name is required" }}
{{- end }}
{{- if not $tls.certManager.dnsNames }}
{{- fail "edge.tls.certManager.dnsNames needs the name(s) encoders connect to" }}
{{- end }}
{{- end }}
{{- end }}
{{- $mode := toString .Values.edge.proxyProtocol.mode }}
{{- if and (ne $mode "off") (ne $mode "false") (not .Values.edge.proxyProtocol.trustedCIDRs) }}
{{- fail "edge.proxyProtocol.mode is on but edge.proxyProtocol.trustedCIDRs is empty: list the load balancer's addresses" }}
{{- end }}
{{- end }}

{{/*
SRT (edge.srt): the listener's environment; empty when SRT is off. The passphrase comes from a
Secret as an environment variable (the edge reads STREAMFLEET_SRT_PASSPHRASE when no file is
given), so it never appears in the pod spec.
*/}}
{{- define "streamfleet.srt.env" -}}
{{- $srt := .Values.edge.srt }}
{{- if $srt.enabled }}
- name: STREAMFLEET_SRT_LISTEN
  value: "0.0.0.0:{{ $srt.port }}"
- name: STREAMFLEET_SRT_LATENCY
  value: {{ $srt.latency | quote }}
{{- if $srt.passphraseSecret }}
- name: STREAMFLEET_SRT_PASSPHRASE
  valueFrom:
    secretKeyRef:
      name: {{ $srt.passphraseSecret }}
      key: {{ $srt.passphraseSecretKey }}
{{- end }}
{{- end }}
{{- end }}

{{/* The SRT Service port (UDP), for the RTMP Service (`mixed`) or the SRT one (`separate`). */}}
{{- define "streamfleet.srt.servicePort" -}}
{{- $srt := .Values.edge.srt }}
{{- $type := .Values.edge.service.type }}
- name: srt
  port: {{ $srt.port }}
  targetPort: srt
  protocol: UDP
  {{- if and (or (eq $type "LoadBalancer") (eq $type "NodePort")) $srt.nodePort }}
  nodePort: {{ $srt.nodePort }}
  {{- end }}
{{- end }}
