{{- define "kod.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kod.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "kod.serviceAccount" -}}
{{- default (include "kod.fullname" .) .Values.token.serviceAccountName -}}
{{- end -}}

{{- define "kod.tokenSecret" -}}
{{- printf "%s-token" (include "kod.serviceAccount" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kod.cluster" -}}
{{- printf "outbound|443||%s" .Values.apiServer.host -}}
{{- end -}}

{{- define "kod.jwksUri" -}}
{{- default (printf "https://%s/openid/v1/jwks" (first .Values.hosts)) .Values.jwksUri -}}
{{- end -}}

{{/* The filter's configuration: exactly the keys it accepts (src/config.rs). */}}
{{- define "kod.pluginConfig" -}}
{{- $c := dict
  "cluster" (include "kod.cluster" .)
  "authority" .Values.apiServer.authority
  "hosts" .Values.hosts
  "jwks_uri" (include "kod.jwksUri" .)
  "timeout_ms" .Values.plugin.timeoutMs
  "refresh_interval_s" .Values.plugin.refreshIntervalS
  "max_stale_s" .Values.plugin.maxStaleS -}}
{{- if eq .Values.token.mode "static" -}}
{{- $_ := set $c "token_env" .Values.token.envName -}}
{{- end -}}
{{- toYaml $c -}}
{{- end -}}

{{/* Envoy injects the token itself (credential_injector): mode rotating. */}}
{{- define "kod.injected" -}}
{{- if eq .Values.token.mode "rotating" }}true{{ end -}}
{{- end -}}

{{/* The directory Envoy watches: where the gateway mounts the token Secret. */}}
{{- define "kod.tokenDir" -}}
{{- .Values.token.mountPath -}}
{{- end -}}

{{/* The SDS file of the injected modes: a generic secret read from the token file. */}}
{{- define "kod.tokenSds" -}}
resources:
- "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret
  name: kube-oidc-discovery-token
  generic_secret:
    secret:
      filename: {{ include "kod.tokenDir" . }}/token
{{- end -}}

{{/* The account whose token reaches the API server: always the dedicated one, never the
gateway's (the gateway's account can read the TLS Secrets of its namespace). */}}
{{- define "kod.tokenAccount" -}}
{{- include "kod.serviceAccount" . -}}
{{- end -}}

{{/* The name istiod gives the WasmPlugin's HTTP filter in the gateway's listeners, for every
Istio release the chart supports (the chart cannot tell which one runs; the patches of the names
that do not exist match nothing):
  1.22-1.25  extenstions.istio.io/wasmplugin/<ns>.<name>   (sic, pilot/pkg/model/extensions.go)
  1.26-1.29  extensions.istio.io/wasmplugin/<ns>.<name>
  1.30-      extensions.istio.io/trafficextension/<ns>.<name>~istio-translated-wasmplugin
             (WasmPlugins are translated to TrafficExtensions) */}}
{{- define "kod.filterNames" -}}
{{- $n := printf "%s.%s" .Release.Namespace (include "kod.fullname" .) -}}
- extenstions.istio.io/wasmplugin/{{ $n }}
- extensions.istio.io/wasmplugin/{{ $n }}
- extensions.istio.io/trafficextension/{{ $n }}~istio-translated-wasmplugin
{{- end -}}
