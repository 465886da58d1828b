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

{{/* The container's arguments, in the base's order, then the optional
flags; toYaml quotes whatever a value holds (a PromQL query, a URL). */}}
{{- define "hdns.args" -}}
{{- $v := .Values -}}
{{- $args := list (printf "--listen=:%v" $v.ports.dns) (printf "--http-listen=:%v" $v.ports.http) (printf "--admin-listen=%s" $v.adminListen) -}}
{{- range $v.zones }}{{ $args = append $args (printf "--zone=%s" .) }}{{ end -}}
{{- $args = append $args (printf "--ttl=%s" $v.ttl) -}}
{{- $args = append $args (printf "--log-level=%s" $v.logLevel) -}}
{{- with $v.logFormat }}{{ $args = append $args (printf "--log-format=%s" .) }}{{ end -}}
{{- with $v.defaultPolicy }}{{ $args = append $args (printf "--default-policy=%s" .) }}{{ end -}}
{{- if not (kindIs "invalid" $v.lameduckSeconds) }}{{ $args = append $args (printf "--lameduck=%vs" $v.lameduckSeconds) }}{{ end -}}
{{- range $v.forward.upstreams }}{{ $args = append $args (printf "--forward=%s" .) }}{{ end -}}
{{- range $v.forward.allow }}{{ $args = append $args (printf "--forward-allow=%s" .) }}{{ end -}}
{{- $p := $v.prometheus -}}
{{- with $p.url }}{{ $args = append $args (printf "--prometheus-url=%s" .) }}{{ end -}}
{{- with $p.loadQuery }}{{ $args = append $args (printf "--load-query=%s" .) }}{{ end -}}
{{- with include "hdns.tokenFile" . }}{{ $args = append $args (printf "--prometheus-bearer-token-file=%s" .) }}{{ end -}}
{{- if $p.tls.secretName -}}
{{- $dir := include "hdns.tlsDir" . -}}
{{- with $p.tls.caKey }}{{ $args = append $args (printf "--prometheus-ca-file=%s/%s" $dir .) }}{{ end -}}
{{- with $p.tls.certKey }}{{ $args = append $args (printf "--prometheus-cert-file=%s/%s" $dir .) }}{{ end -}}
{{- with $p.tls.keyKey }}{{ $args = append $args (printf "--prometheus-key-file=%s/%s" $dir .) }}{{ end -}}
{{- end -}}
{{- $args = concat $args (include "hdns.corednsArgs" . | fromJsonArray) (include "hdns.rrlArgs" . | fromJsonArray) -}}
{{- toYaml (concat $args $v.extraArgs) -}}
{{- end -}}

{{/* The --coredns-* flags as a JSON list, empty unless corednsAdoption is
enabled: deploy/coredns's two, and --coredns-port when not 53. */}}
{{- define "hdns.corednsArgs" -}}
{{- $a := .Values.corednsAdoption -}}
{{- $args := list -}}
{{- if $a.enabled -}}
{{- $args = append $args (printf "--coredns-configmap=%s" $a.configMap) -}}
{{- $service := printf "%s/%s" .Release.Namespace (include "hdns.fullname" .) -}}
{{- range ($a.forward | default (list $service)) }}{{ $args = append $args (printf "--coredns-forward=%s" .) }}{{ end -}}
{{- if ne (int $a.port) 53 }}{{ $args = append $args (printf "--coredns-port=%d" (int $a.port)) }}{{ end -}}
{{- end -}}
{{- toJson $args -}}
{{- end -}}

{{/* The --rrl-* flags as a JSON list: each one set (not null, not ""),
none while responsesPerSecond is 0; the others without it fail rendering
(hdns would refuse or ignore them). */}}
{{- define "hdns.rrlArgs" -}}
{{- $r := .Values.rrl -}}
{{- $args := list -}}
{{- $ints := list (list "errors-per-second" $r.errorsPerSecond) (list "slip" $r.slip) (list "ipv4-prefix-length" $r.ipv4PrefixLength) (list "ipv6-prefix-length" $r.ipv6PrefixLength) -}}
{{- range $ints }}
{{- if not (kindIs "invalid" (index . 1)) }}{{ $args = append $args (printf "--rrl-%s=%d" (index . 0) (int (index . 1))) }}{{ end -}}
{{- end -}}
{{- with $r.window }}{{ $args = append $args (printf "--rrl-window=%s" .) }}{{ end -}}
{{- if gt (int $r.responsesPerSecond) 0 -}}
{{- $args = prepend $args (printf "--rrl-responses-per-second=%d" (int $r.responsesPerSecond)) -}}
{{- else if $args -}}
{{- fail (printf "%s set with rrl.responsesPerSecond 0: response rate limiting is off" (join " " $args)) -}}
{{- end -}}
{{- toJson $args -}}
{{- end -}}

{{/* The grace period must cover the lameduck and the 5 s hdns then takes to close. */}}
{{- define "hdns.checkGrace" -}}
{{- $lameduck := .Values.lameduckSeconds | default 5 | int -}}
{{- if lt (int .Values.terminationGracePeriodSeconds) (add $lameduck 5 | int) -}}
{{- fail (printf "terminationGracePeriodSeconds %v is shorter than lameduckSeconds %d + 5 s: the kubelet would kill hdns while it still answers" .Values.terminationGracePeriodSeconds $lameduck) -}}
{{- end -}}
{{- end -}}
