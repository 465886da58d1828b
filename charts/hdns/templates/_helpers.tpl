{{/* The chart's name: app.kubernetes.io/name, which every selector uses. */}}
{{- define "hdns.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Object names: the release name when it contains the chart's name, else release-chart. */}}
{{- define "hdns.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "hdns.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "hdns.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hdns.name" . }}
{{- end -}}

{{/* Labels of every object: the selector's, then commonLabels. */}}
{{- define "hdns.labels" -}}
{{ include "hdns.selectorLabels" . }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "hdns.image" -}}
{{- $tag := default (printf "v%s" .Chart.AppVersion) .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* Where the Prometheus credentials are mounted. */}}
{{- define "hdns.tokenDir" -}}/var/run/secrets/hdns/prometheus-token{{- end -}}
{{- define "hdns.tlsDir" -}}/var/run/secrets/hdns/prometheus-tls{{- end -}}

{{/* The bearer token's file: the projected ServiceAccount token, else the Secret's key. */}}
{{- define "hdns.tokenFile" -}}
{{- $t := .Values.prometheus.bearerToken -}}
{{- if $t.serviceAccountAudience -}}
{{- printf "%s/token" (include "hdns.tokenDir" .) -}}
{{- else if $t.secretName -}}
{{- printf "%s/%s" (include "hdns.tokenDir" .) $t.secretKey -}}
{{- end -}}
{{- end -}}

{{/* The container's arguments, in the base's order, then the optional flags. */}}
{{- define "hdns.args" -}}
- --listen=:{{ .Values.ports.dns }}
- --http-listen=:{{ .Values.ports.http }}
- --admin-listen={{ .Values.adminListen }}
{{- range .Values.zones }}
- --zone={{ . }}
{{- end }}
- --ttl={{ .Values.ttl }}
- --log-level={{ .Values.logLevel }}
{{- with .Values.logFormat }}
- --log-format={{ . }}
{{- end }}
{{- with .Values.defaultPolicy }}
- --default-policy={{ . }}
{{- end }}
{{- if not (kindIs "invalid" .Values.lameduckSeconds) }}
- --lameduck={{ .Values.lameduckSeconds }}s
{{- end }}
{{- range .Values.forward.upstreams }}
- --forward={{ . }}
{{- end }}
{{- range .Values.forward.allow }}
- --forward-allow={{ . }}
{{- end }}
{{- include "hdns.prometheusArgs" . }}
{{- range .Values.extraArgs }}
- {{ . }}
{{- end }}
{{- end -}}

{{- define "hdns.prometheusArgs" -}}
{{- $p := .Values.prometheus -}}
{{- with $p.url }}
- --prometheus-url={{ . }}
{{- end }}
{{- with $p.loadQuery }}
- --load-query={{ . }}
{{- end }}
{{- with include "hdns.tokenFile" . }}
- --prometheus-bearer-token-file={{ . }}
{{- end }}
{{- if $p.tls.secretName }}
{{- with $p.tls.caKey }}
- --prometheus-ca-file={{ include "hdns.tlsDir" $ }}/{{ . }}
{{- end }}
{{- with $p.tls.certKey }}
- --prometheus-cert-file={{ include "hdns.tlsDir" $ }}/{{ . }}
{{- end }}
{{- with $p.tls.keyKey }}
- --prometheus-key-file={{ include "hdns.tlsDir" $ }}/{{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The grace period must cover the lameduck and the 5 s hdns then takes to close. */}}
{{- define "hdns.checkGrace" -}}
{{- $lameduck := .Values.lameduckSeconds | default 5 | int -}}
{{- if lt (int .Values.terminationGracePeriodSeconds) (add $lameduck 5 | int) -}}
{{- fail (printf "terminationGracePeriodSeconds %v is shorter than lameduckSeconds %d + 5 s: the kubelet would kill hdns while it still answers" .Values.terminationGracePeriodSeconds $lameduck) -}}
{{- end -}}
{{- end -}}
