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

{{/* This cluster's API server as an upstream of the filter: its cluster, and how its token
reaches Envoy (token.mode). The fields every upstream has (kod.upstreams). */}}
{{- define "kod.localUpstream" -}}
{{- $u := dict "remote" false "cluster" (include "kod.cluster" .) "authority" .Values.apiServer.authority
  "tokenMode" .Values.token.mode "tokenSecret" (include "kod.tokenSecret" .)
  "volume" "kod-token" "tokenDir" .Values.token.mountPath
  "sdsKey" "token-sds.yaml" "sdsName" "kube-oidc-discovery-token" -}}
{{- if eq .Values.token.mode "static" }}{{ $_ := set $u "envName" .Values.token.envName }}{{ end -}}
{{- if eq .Values.token.mode "none" }}{{ $_ := unset $u "tokenSecret" }}{{ end -}}
{{- toYaml $u -}}
{{- end -}}

{{/* The `issuers` entries, checked across entries (values.schema.json checks each one) and
completed: host and path prefix of the issuer URL (as the filter splits it), `id` (the name with
`_` as `-`, for object, volume and variable names), the upstream fields of kod.localUpstream, and
for another cluster's API server its ServiceEntry/DestinationRule settings and the Secrets the
user creates (`<fullname>-<id>-ca`, `<fullname>-<id>-token`). Empty in the single-issuer form. */}}
{{- define "kod.issuers" -}}
{{- $out := list -}}
{{- $seen := dict -}}
{{- $full := include "kod.fullname" . -}}
{{- if and .Values.issuers .Values.jwksUri -}}
{{- fail "jwksUri is the single-issuer form's: with issuers, set issuers[].jwksUri" -}}
{{- end -}}
{{- range $i, $e := .Values.issuers -}}
{{- $at := printf "issuers[%d]" $i -}}
{{- $id := replace "_" "-" $e.name -}}
{{- $host := regexReplaceAll "^https://([^/]*).*$" $e.issuer "${1}" -}}
{{- $prefix := trimSuffix "/" (regexReplaceAll "^https://[^/]*" $e.issuer "") -}}
{{- $u := dict -}}
{{- if $e.apiServer -}}
{{- $a := $e.apiServer -}}
{{- $port := int (default 443 $a.port) -}}
{{- $sni := default $a.host $a.sni -}}
{{- $mode := default $.Values.token.mode $e.tokenMode -}}
{{- $u = dict "remote" true "cluster" (printf "outbound|%d||%s" $port $a.host) "authority" $a.host
  "tokenMode" $mode "tokenSecret" (printf "%s-%s-token" $full $id) "caSecret" (printf "%s-%s-ca" $full $id)
  "volume" (printf "kod-%s-token" $id) "tokenDir" (printf "%s-%s" $.Values.token.mountPath $id)
  "sdsKey" (printf "token-sds-%s.yaml" $id) "sdsName" (printf "kube-oidc-discovery-token-%s" $id)
  "host" $a.host "port" $port "addresses" (default (list) $a.addresses) "sni" $sni
  "subjectAltNames" (default (list $sni) $a.subjectAltNames) -}}
{{- if eq $mode "static" }}{{ $_ := set $u "envName" (printf "%s_%s" $.Values.token.envName (upper $id | replace "-" "_")) }}{{ end -}}
{{- if eq $mode "none" }}{{ $_ := unset $u "tokenSecret" }}{{ end -}}
{{- else -}}
{{- $u = include "kod.localUpstream" $ | fromYaml -}}
{{- end -}}
{{- $_ := set $u "name" $e.name -}}
{{- $_ := set $u "id" $id -}}
{{- $_ := set $u "issuer" $e.issuer -}}
{{- $_ := set $u "publicHost" $host -}}
{{- $_ := set $u "prefix" $prefix -}}
{{- $_ := set $u "jwksUri" ($e.jwksUri | default "") -}}
{{- /* what no two entries may share, each with the key it is reported under */ -}}
{{- range list
  (list "name" (printf "name %s (`-` and `_` alike, as in metric and object names)" $id))
  (list "issuer" (printf "document paths https://%s%s/..." $host $prefix))
  (list "apiServer" (printf "API server (cluster %s)" $u.cluster)) -}}
{{- $key := index . 0 -}}
{{- $what := index . 1 -}}
{{- with get $seen $what -}}
{{- fail (printf "%s.%s: the %s is also that of %s" $at $key $what .) -}}
{{- end -}}
{{- $_ := set $seen $what $at -}}
{{- end -}}
{{- $out = append $out $u -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/* The filter's upstreams: the `issuers` entries, or this cluster's API server alone. */}}
{{- define "kod.upstreams" -}}
{{- if .Values.issuers -}}
{{- include "kod.issuers" . -}}
{{- else -}}
{{- list (include "kod.localUpstream" . | fromYaml) | toYaml -}}
{{- end -}}
{{- end -}}

{{/* "true" when an upstream is this cluster's API server: the chart's account, token Secret and
DestinationRule are for it. */}}
{{- define "kod.inCluster" -}}
{{- range include "kod.upstreams" . | fromYamlArray }}{{ if not .remote }}true{{ end }}{{ end -}}
{{- end -}}

{{/* The token mode of this cluster's API server (token.mode), empty when no upstream is this
cluster's. */}}
{{- define "kod.localTokenMode" -}}
{{- range include "kod.upstreams" . | fromYamlArray }}{{ if not .remote }}{{ .tokenMode }}{{ end }}{{ end -}}
{{- end -}}

{{/* The public hosts: `hosts`, or the hosts of the issuer URLs (each once, in order). */}}
{{- define "kod.publicHosts" -}}
{{- if .Values.issuers -}}
{{- $hosts := list -}}
{{- range include "kod.issuers" . | fromYamlArray }}{{ $hosts = append $hosts .publicHost }}{{ end -}}
{{- $hosts | uniq | toYaml -}}
{{- else -}}
{{- toYaml .Values.hosts -}}
{{- end -}}
{{- end -}}

{{/* The filter's configuration: exactly the keys it accepts (src/config.rs), in the
single-issuer form or the `issuers` form. */}}
{{- define "kod.pluginConfig" -}}
{{- $c := dict
  "timeout_ms" .Values.plugin.timeoutMs
  "refresh_interval_s" .Values.plugin.refreshIntervalS
  "max_stale_s" .Values.plugin.maxStaleS -}}
{{- if .Values.issuers -}}
{{- $entries := list -}}
{{- range include "kod.issuers" . | fromYamlArray -}}
{{- $e := dict "name" .name "issuer" .issuer "cluster" .cluster "authority" .authority -}}
{{- with .envName }}{{ $_ := set $e "token_env" . }}{{ end -}}
{{- with .jwksUri }}{{ $_ := set $e "jwks_uri" . }}{{ end -}}
{{- $entries = append $entries $e -}}
{{- end -}}
{{- $_ := set $c "issuers" $entries -}}
{{- else -}}
{{- $u := include "kod.localUpstream" . | fromYaml -}}
{{- $_ := merge $c (dict "cluster" $u.cluster "authority" $u.authority "hosts" .Values.hosts
  "jwks_uri" (include "kod.jwksUri" .)) -}}
{{- with $u.envName }}{{ $_ := set $c "token_env" . }}{{ end -}}
{{- end -}}
{{- toYaml $c -}}
{{- end -}}

{{/* The SDS file of an upstream whose token Envoy injects (tokenMode rotating): a generic
secret read from the token file of its mounted Secret. */}}
{{- define "kod.tokenSds" -}}
resources:
- "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret
  name: {{ .sdsName }}
  generic_secret:
    secret:
      filename: {{ .tokenDir }}/token
{{- end -}}

{{/* The ClusterRoleBinding of the discovery role: to the dedicated account, or in token mode none
to the anonymous group. One name for both, so a change of mode updates it in place. */}}
{{- define "kod.discoveryBinding" -}}
{{- printf "%s-%s" .Release.Namespace (include "kod.fullname" .) | trunc 63 | trimSuffix "-" -}}
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

{{/* The Gateway API Gateway of gateway.targetRefs (Gateway API mode), empty in classic mode. The
schema allows at most one targetRef, of kind Gateway: the DestinationRules select its pods by the
label Istio's deployment controller gives them, which is also what istiod matches targetRefs by
(pilot/pkg/model/policyattachment.go). Classic mode's Istio Gateway and VirtualService do not
apply to a Gateway API gateway, so they are refused here. */}}
{{- define "kod.gatewayAPI" -}}
{{- with .Values.gateway.targetRefs -}}
{{- $gw := $.Values.publicGateway -}}
{{- if or $gw.create $gw.gateways -}}
{{- fail "gateway.targetRefs (Gateway API mode) takes the chart's HTTPRoute: publicGateway.create and publicGateway.gateways are classic mode's Istio Gateway and VirtualService" -}}
{{- end -}}
{{- (first .).name -}}
{{- end -}}
{{- end -}}

{{/* How the chart's Istio objects bind to the gateway: targetRefs in Gateway API mode (istiod
ignores a workloadSelector policy for such a gateway when ENABLE_SELECTOR_BASED_K8S_GATEWAY_POLICY
is off, and a targetRefs policy for any other gateway), else the workloadSelector. Used by the
EnvoyFilters, whose selector is `workloadSelector` + `labels`. */}}
{{- define "kod.envoyFilterBinding" -}}
{{- if include "kod.gatewayAPI" . -}}
targetRefs:
  {{- toYaml .Values.gateway.targetRefs | nindent 2 }}
{{- else -}}
workloadSelector:
  labels:
    {{- toYaml .Values.gateway.selector | nindent 4 }}
{{- end -}}
{{- end -}}

{{/* The gateway's pod labels for a DestinationRule's workloadSelector (it has no targetRefs): in
Gateway API mode the label Istio's deployment controller puts on the Gateway's pods. */}}
{{- define "kod.podLabels" -}}
{{- with include "kod.gatewayAPI" . -}}
gateway.networking.k8s.io/gateway-name: {{ . }}
{{- else -}}
{{- toYaml .Values.gateway.selector -}}
{{- end -}}
{{- end -}}

{{/* The request paths the filter answers: the two documents under each issuer's path (the
single-issuer form: at the root), each once. */}}
{{- define "kod.documentPaths" -}}
{{- $prefixes := list "" -}}
{{- if .Values.issuers -}}
{{- $prefixes = list -}}
{{- range include "kod.issuers" . | fromYamlArray }}{{ $prefixes = append $prefixes .prefix }}{{ end -}}
{{- end -}}
{{- $paths := list -}}
{{- range $prefixes | uniq -}}
{{- $paths = append $paths (printf "%s/.well-known/openid-configuration" .) -}}
{{- $paths = append $paths (printf "%s/openid/v1/jwks" .) -}}
{{- end -}}
{{- toYaml $paths -}}
{{- end -}}

{{/* Whether the chart routes the public hosts: its VirtualService (classic mode, bound to its
Gateway or yours) or its HTTPRoute (Gateway API mode). */}}
{{- define "kod.routesHosts" -}}
{{- $gw := .Values.publicGateway -}}
{{- if include "kod.gatewayAPI" . -}}
{{- if $gw.httpRoute }}true{{ end -}}
{{- else if and $gw.virtualService (or $gw.create $gw.gateways) -}}
true
{{- end -}}
{{- end -}}

{{/* The names of the chart's routes, as istiod names them in the gateway's route configuration:
the VirtualService's http route names (pilot/pkg/networking/core/route/route.go, TranslateRoute:
the route's name, its matches unnamed), or for the HTTPRoute's rules, which carry no name,
`<namespace>.<name>.<rule index>` (pilot/pkg/config/kube/gateway/conversion.go). The plugin is
enabled on exactly these routes (scope.yaml): route names survive the merge of virtual hosts that
route collapse does, virtual host names do not. The HTTPRoute's rules: the document paths in
chunks of at most 64 matches (the CRD's limit), then the catch-all. */}}
{{- define "kod.routeNames" -}}
{{- $base := printf "%s.%s" .Release.Namespace (include "kod.fullname" .) -}}
{{- if include "kod.gatewayAPI" . -}}
{{- $n := len (include "kod.documentPathChunks" . | fromYamlArray) -}}
{{- range until (add1 $n | int) }}
- {{ printf "%s.%d" $base . }}
{{- end -}}
{{- else -}}
- {{ $base }}.documents
- {{ $base }}.not-found
{{- end -}}
{{- end -}}

{{/* kod.documentPaths in chunks of at most 64 (an HTTPRoute rule's matches). The CRD also
allows at most 128 matches per HTTPRoute, the catch-all included. */}}
{{- define "kod.documentPathChunks" -}}
{{- $paths := include "kod.documentPaths" . | fromYamlArray -}}
{{- if gt (len $paths) 127 -}}
{{- fail (printf "Gateway API mode: %d document paths (2 per issuer path) do not fit one HTTPRoute (at most 127 beside its catch-all)" (len $paths)) -}}
{{- end -}}
{{- $chunks := list -}}
{{- $chunk := list -}}
{{- range $paths -}}
{{- if eq (len $chunk) 64 }}{{ $chunks = append $chunks $chunk }}{{ $chunk = list }}{{ end -}}
{{- $chunk = append $chunk . -}}
{{- end -}}
{{- toYaml (append $chunks $chunk) -}}
{{- end -}}

{{/* The hosts of the Services whose clusters the filter calls (the API servers), for the
EnvoyFilter annotation envoyfilter.istio.io/referenced-services. */}}
{{- define "kod.apiServerHosts" -}}
{{- $hosts := list -}}
{{- range include "kod.upstreams" . | fromYamlArray -}}
{{- $hosts = append $hosts (ternary .host $.Values.apiServer.host .remote) -}}
{{- end -}}
{{- toYaml ($hosts | uniq) -}}
{{- end -}}
