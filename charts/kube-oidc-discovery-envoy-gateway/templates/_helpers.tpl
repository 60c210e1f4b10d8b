{{- define "kodeg.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kodeg.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The ClusterRoleBinding of the discovery role: to the dedicated account, or in token mode none
to the anonymous group. One name for both, so a change of mode updates it in place. */}}
{{- define "kodeg.discoveryBinding" -}}
{{- printf "%s-%s" .Release.Namespace (include "kodeg.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kodeg.serviceAccount" -}}
{{- default (include "kodeg.fullname" .) .Values.token.serviceAccountName -}}
{{- end -}}

{{/* Envoy Gateway's name for the cluster of the one backendRef of rule 0 of HTTPRoute `route`
(internal/gatewayapi/helpers.go irRouteDestinationName, irDestinationSettingName, v1.9.1). With a
filter on the backendRef (credentialInjection, token mode inject) Envoy Gateway makes one cluster
per backend (ir.RouteDestination.NeedsClusterPerSetting) and appends /backend/<j>. A convention,
not an API: tests/envoygateway/test_cluster_name.py holds it to Envoy Gateway's output. */}}
{{- define "kodeg.clusterName" -}}
{{- $c := printf "httproute/%s/%s/rule/0" .ns .route -}}
{{- if eq .mode "inject" }}{{ $c = printf "%s/backend/0" $c }}{{ end -}}
{{- $c -}}
{{- end -}}

{{/* Where the Envoy container mounts its projected token (token mode projected). */}}
{{- define "kodeg.projectedDir" -}}/var/run/secrets/kube-oidc-discovery{{- end -}}

{{/* The Envoy pods' service account (token mode projected), named by the chart's EnvoyProxy. */}}
{{- define "kodeg.envoyServiceAccount" -}}
{{- default (printf "%s-envoy" (include "kodeg.fullname" .)) .Values.envoyProxy.serviceAccountName | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kodeg.gatewayNamespace" -}}
{{- default .Release.Namespace .Values.gateway.namespace -}}
{{- end -}}

{{/* The filter's upstreams, one HTTPRoute each: the `issuers` entries, or this cluster's API
server alone (single-issuer form). Each: route (HTTPRoute name), hostnames, prefix (document path
prefix), cluster, authority, tokenMode (token.mode; another cluster's is inject when token.mode is
projected, the Envoy pods' token being this cluster's), tokenSecret (inject and env), envName (its
token's variable in env mode: token.envName, another cluster's <envName>_<NAME>), remote (another
cluster's), and its Backend and BackendTLSPolicy settings: backend, host, addresses,
tlsHostname, caConfigMap. */}}
{{- define "kodeg.upstreams" -}}
{{- $full := include "kodeg.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- $mode := .Values.token.mode -}}
{{- $a := .Values.apiServer -}}
{{- $local := dict "remote" false "authority" $a.authority "tokenMode" $mode
  "tokenSecret" (default (printf "%s-credential" $full) .Values.token.secretName)
  "backend" (dict "group" "gateway.envoyproxy.io" "kind" "Backend" "name" $full "namespace" $ns "port" (int $a.port))
  "host" $a.host "addresses" (list) "tlsHostname" $a.hostname "caConfigMap" $a.caConfigMap -}}
{{- $out := list -}}
{{- if not .Values.issuers -}}
{{- $u := deepCopy $local -}}
{{- $_ := set $u "route" $full -}}
{{- $_ := set $u "id" "" -}}
{{- $_ := set $u "hostnames" .Values.hosts -}}
{{- $_ := set $u "prefix" "" -}}
{{- $out = append $out $u -}}
{{- else -}}
{{- if .Values.jwksUri }}{{ fail "jwksUri is the single-issuer form's: with issuers, set issuers[].jwksUri" }}{{ end -}}
{{- $seen := dict -}}
{{- $locals := 0 -}}
{{- range $i, $e := .Values.issuers -}}
{{- $id := replace "_" "-" $e.name -}}
{{- if hasKey $seen $id }}{{ fail (printf "issuers[%d].name: %s is also issuers[%s]'s (`-` and `_` alike)" $i $e.name (get $seen $id)) }}{{ end -}}
{{- $_ := set $seen $id (toString $i) -}}
{{- $u := dict -}}
{{- if $e.apiServer -}}
{{- $a := $e.apiServer -}}
{{- $port := int (default 443 $a.port) -}}
{{- $u = dict "remote" true "authority" $a.host "tokenMode" (ternary "inject" $mode (eq $mode "projected"))
  "tokenSecret" (default (printf "%s-%s-credential" $full $id) $e.tokenSecret)
  "backend" (dict "group" "gateway.envoyproxy.io" "kind" "Backend" "name" (printf "%s-%s" $full $id)
                  "namespace" $ns "port" $port)
  "host" $a.host "addresses" (default (list) $a.addresses) "tlsHostname" (default $a.host $a.hostname)
  "caConfigMap" (default (printf "%s-%s-ca" $full $id) $a.caConfigMap) -}}
{{- else -}}
{{- $locals = add1 $locals -}}
{{- if gt $locals 1 }}{{ fail (printf "issuers[%d]: only one entry may be this cluster (no apiServer)" $i) }}{{ end -}}
{{- $u = deepCopy $local -}}
{{- if $e.tokenSecret }}{{ $_ := set $u "tokenSecret" $e.tokenSecret }}{{ end -}}
{{- end -}}
{{- $_ := set $u "id" $id -}}
{{- $_ := set $u "name" $e.name -}}
{{- $_ := set $u "issuer" $e.issuer -}}
{{- $_ := set $u "jwksUri" ($e.jwksUri | default "") -}}
{{- $_ := set $u "route" (printf "%s-%s" $full $id | trunc 63 | trimSuffix "-") -}}
{{- $_ := set $u "hostnames" (list (regexReplaceAll "^https://([^/:]*).*$" $e.issuer "${1}")) -}}
{{- $_ := set $u "prefix" (trimSuffix "/" (regexReplaceAll "^https://[^/]*" $e.issuer "")) -}}
{{- $out = append $out $u -}}
{{- end -}}
{{- end -}}
{{- $envName := .Values.token.envName -}}
{{- range $out -}}
{{- if not .remote }}{{ $_ := set .backend "name" .route }}{{ end -}}
{{- $_ := set . "cluster" (include "kodeg.clusterName" (dict "ns" $ns "route" .route "mode" .tokenMode)) -}}
{{- if has .tokenMode (list "none" "projected") }}{{ $_ := unset . "tokenSecret" }}{{ end -}}
{{- $_ := set . "envName" (ternary (printf "%s_%s" $envName (upper .id | replace "-" "_")) $envName .remote) -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/* true when an upstream is this cluster's API server. */}}
{{- define "kodeg.inCluster" -}}
{{- range include "kodeg.upstreams" . | fromYamlArray }}{{ if not .remote }}true{{ end }}{{ end -}}
{{- end -}}

{{/* The filter's configuration (README "Configuration"): the same JSON the Istio chart gives as
pluginConfig, with Envoy Gateway's cluster names. */}}
{{- define "kodeg.pluginConfig" -}}
{{- $ups := include "kodeg.upstreams" . | fromYamlArray -}}
{{- $p := .Values.plugin -}}
{{- $envMode := eq .Values.token.mode "env" -}}
{{- $cfg := dict "timeout_ms" (int $p.timeoutMs) "refresh_interval_s" (int $p.refreshIntervalS) "max_stale_s" (int $p.maxStaleS) -}}
{{- if not .Values.issuers -}}
{{- $u := first $ups -}}
{{- $_ := set $cfg "cluster" $u.cluster -}}
{{- $_ := set $cfg "authority" $u.authority -}}
{{- $_ := set $cfg "hosts" .Values.hosts -}}
{{- $_ := set $cfg "jwks_uri" (default (printf "https://%s/openid/v1/jwks" (first .Values.hosts)) .Values.jwksUri) -}}
{{- if $envMode }}{{ $_ := set $cfg "token_env" $u.envName }}{{ end -}}
{{- else -}}
{{- $list := list -}}
{{- range $ups -}}
{{- $e := dict "name" .name "issuer" .issuer "cluster" .cluster "authority" .authority -}}
{{- with .jwksUri }}{{ $_ := set $e "jwks_uri" . }}{{ end -}}
{{- if $envMode }}{{ $_ := set $e "token_env" .envName }}{{ end -}}
{{- $list = append $list $e -}}
{{- end -}}
{{- $_ := set $cfg "issuers" $list -}}
{{- end -}}
{{- toJson $cfg -}}
{{- end -}}
