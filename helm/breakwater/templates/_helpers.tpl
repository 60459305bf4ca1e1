{{/* Names, labels and derived values shared by every template. */}}

{{/* The chart's name, overridable. */}}
{{- define "breakwater.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name of the release's objects: <release>-<name>, or the release name when it already
contains the chart name. Truncated so that "<fullname>-headless" and the StatefulSet's pod names
stay valid. */}}
{{- define "breakwater.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "breakwater.headlessName" -}}
{{- printf "%s-headless" (include "breakwater.fullname" .) -}}
{{- end -}}

{{- define "breakwater.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that select the release's pods; never change them on upgrade. */}}
{{- define "breakwater.selectorLabels" -}}
app.kubernetes.io/name: {{ include "breakwater.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "breakwater.labels" -}}
{{ include "breakwater.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: gateway
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ include "breakwater.chart" . }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* metadata.annotations of an object (at metadata's indentation, nothing when there are none):
the common annotations merged with the object's own (a dict, which wins). */}}
{{- define "breakwater.annotations" -}}
{{- $all := merge (deepCopy (.own | default dict)) (deepCopy .context.Values.commonAnnotations) -}}
{{- with $all }}
  annotations:
    {{- toYaml . | nindent 4 }}
{{- end }}
{{- end -}}

{{- define "breakwater.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "breakwater.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Secret holding BREAKWATER_BROKER_URL and the other credentials. */}}
{{- define "breakwater.secretName" -}}
{{- default (include "breakwater.fullname" .) .Values.existingSecret -}}
{{- end -}}

{{- define "breakwater.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Where the store volume is mounted, and the store file in it (BREAKWATER_STORE_PATH). */}}
{{- define "breakwater.dataDir" -}}/data{{- end -}}

{{/* The pod's terminationGracePeriodSeconds, derived from shutdown.graceSeconds: SIGTERM comes
after the preStop sleep; then uvicorn waits up to the grace for in-flight HTTP requests, and then
the inbound consumers get up to the grace again; the margin covers closing the store. */}}
{{- define "breakwater.terminationGracePeriodSeconds" -}}
{{- $s := .Values.shutdown -}}
{{- add (int $s.preStopSleepSeconds) (mul 2 (int $s.graceSeconds)) (int $s.marginSeconds) -}}
{{- end -}}

{{/* TLS to the broker (broker.tls): where the Secret broker.tls.existingSecret is mounted. */}}
{{- define "breakwater.tlsDir" -}}/etc/breakwater/tls{{- end -}}

{{/* The files of the broker TLS Secret, as YAML: setting -> {key: <key in the Secret>, file: <file
name in breakwater.tlsDir>}; only the ones in use, nothing when broker.tls is disabled. The ConfigMap
points the settings at these files and the StatefulSet projects the keys to them, so the two cannot
disagree. Fixed file names keep the paths stable whatever the keys are called (and let one key, a
PEM holding both the certificate and its key, serve twice). */}}
{{- define "breakwater.tlsFiles" -}}
{{- $tls := .Values.broker.tls -}}
{{- if $tls.enabled }}
{{- with $tls.caKey }}
BREAKWATER_BROKER_CA_FILE: {key: {{ . | quote }}, file: ca.crt}
{{- end }}
{{- if and $tls.certKey $tls.keyKey }}
BREAKWATER_BROKER_CERT_FILE: {key: {{ $tls.certKey | quote }}, file: tls.crt}
BREAKWATER_BROKER_KEY_FILE: {key: {{ $tls.keyKey | quote }}, file: tls.key}
{{- end }}
{{- end }}
{{- end -}}

{{/* The container resources, shared by the gateway and its init container. */}}
{{- define "breakwater.resources" -}}
requests:
  {{- toYaml .Values.resources.requests | nindent 2 }}
limits:
  {{- with .Values.resources.limits.cpu }}
  cpu: {{ . | quote }}
  {{- end }}
  memory: {{ .Values.resources.limits.memory | quote }}
{{- end -}}

{{/* The container securityContext, shared by the gateway and its init container. */}}
{{- define "breakwater.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The channel catalog (catalog.*): where its ConfigMap is mounted. */}}
{{- define "breakwater.catalogDir" -}}/etc/breakwater/catalog{{- end -}}

{{/* "true" when a catalog is mounted (catalog.channels or catalog.existingConfigMap), empty when
the gateway runs its built-in catalog. */}}
{{- define "breakwater.catalogMounted" -}}
{{- if or .Values.catalog.channels .Values.catalog.existingConfigMap -}}true{{- end -}}
{{- end -}}

{{/* The ConfigMap holding the catalog: the chart's own or catalog.existingConfigMap. */}}
{{- define "breakwater.catalogConfigMapName" -}}
{{- default (printf "%s-catalog" (include "breakwater.fullname" .)) .Values.catalog.existingConfigMap -}}
{{- end -}}

{{/* The key (file name) of the catalog in that ConfigMap: catalog.yaml in the chart's own. */}}
{{- define "breakwater.catalogKey" -}}
{{- if .Values.catalog.existingConfigMap -}}
{{- .Values.catalog.existingConfigMapKey -}}
{{- else -}}
catalog.yaml
{{- end -}}
{{- end -}}

{{/* BREAKWATER_CATALOG: the catalog file in the pod. */}}
{{- define "breakwater.catalogFile" -}}
{{- printf "%s/%s" (include "breakwater.catalogDir" .) (include "breakwater.catalogKey" .) -}}
{{- end -}}

{{/* The catalog file of catalog.channels: `channels:`, each channel's keys in the documented order
(toYaml would sort them). The ConfigMap holds this text and checksum/catalog is its sha256, so the
two cannot disagree. */}}
{{- define "breakwater.catalog" -}}
{{- $keys := list "name" "summary" "description" "deprecated" "compatibility" "payload" "examples" -}}
# Channel catalog of release {{ .Release.Name }} (BREAKWATER_CATALOG), from the chart's catalog.channels.
channels:
{{- range $channel := .Values.catalog.channels }}
{{- $item := list }}
{{- range $key := $keys }}
{{- if hasKey $channel $key }}
{{- $item = append $item (toYaml (dict $key (get $channel $key))) }}
{{- end }}
{{- end }}
{{ join "\n" $item | indent 4 | trimPrefix "    " | printf "  - %s" }}
{{- end }}
{{- end -}}

{{/* Checks across values that values.schema.json cannot express with a clear message; included
by the StatefulSet, so a bad combination fails the render. */}}
{{- define "breakwater.validateValues" -}}
{{- $catalog := .Values.catalog -}}
{{- if and $catalog.channels $catalog.existingConfigMap -}}
{{- fail (printf "catalog.channels and catalog.existingConfigMap are both set: the catalog is either inline (catalog.channels, rendered to a ConfigMap) or in the existing ConfigMap %q; unset one of them" $catalog.existingConfigMap) -}}
{{- end -}}
{{- $names := dict -}}
{{- range $catalog.channels -}}
{{- if hasKey $names .name -}}
{{- fail (printf "catalog.channels: the channel %q is declared twice; channel names are routing keys and must be unique" .name) -}}
{{- end -}}
{{- $_ := set $names .name true -}}
{{- end -}}
{{- if $catalog.channels -}}
{{- $size := len (include "breakwater.catalog" .) -}}
{{- if gt $size 1048576 -}}
{{- fail (printf "catalog.channels renders to %d bytes, more than a ConfigMap holds (1 MiB): make the payload schemas, descriptions and examples smaller" $size) -}}
{{- end -}}
{{- end -}}
{{- $tls := .Values.broker.tls -}}
{{- if $tls.enabled -}}
{{- if not $tls.existingSecret -}}
{{- fail "broker.tls.enabled is true but broker.tls.existingSecret is empty: name the Secret holding the broker's CA bundle and/or client certificate and key (keys broker.tls.caKey, broker.tls.certKey, broker.tls.keyKey)" -}}
{{- end -}}
{{- if ne (empty $tls.certKey) (empty $tls.keyKey) -}}
{{- fail "broker.tls.certKey and broker.tls.keyKey go together: set both (a client certificate for mutual TLS) or leave both empty (no client certificate)" -}}
{{- end -}}
{{- if and (empty $tls.caKey) (empty $tls.certKey) -}}
{{- fail "broker.tls.enabled is true but broker.tls.caKey, certKey and keyKey are all empty: there is nothing to mount (amqps:// with the system CAs needs no broker.tls; disable it)" -}}
{{- end -}}
{{- end -}}
{{- end -}}
