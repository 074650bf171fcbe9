{{/* Names, labels and shared pod pieces of the guardian chart. */}}

{{- define "guardian.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-guardian, or the release name alone when it already contains the chart name. */}}
{{- define "guardian.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A component's resource name: (dict "ctx" $ "component" "workers"). Kept <= 63 chars. */}}
{{- define "guardian.componentName" -}}
{{- printf "%s-%s" (include "guardian.fullname" .ctx | trunc (int (sub 62 (len .component)))) .component | trimSuffix "-" -}}
{{- end -}}

{{- define "guardian.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "guardian.selectorLabels" -}}
app.kubernetes.io/name: {{ include "guardian.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "guardian.labels" -}}
helm.sh/chart: {{ include "guardian.chart" . }}
{{ include "guardian.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kafka-workload-guardian
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels of one component: (dict "ctx" $ "component" "engine"). */}}
{{- define "guardian.componentLabels" -}}
{{ include "guardian.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "guardian.componentSelectorLabels" -}}
{{ include "guardian.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "guardian.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "guardian.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "guardian.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "guardian.redisName" -}}
{{- include "guardian.componentName" (dict "ctx" . "component" "redis") -}}
{{- end -}}

{{/* Namespaces where pods may be isolated: the list from values, or the release namespace. */}}
{{- define "guardian.isolationNamespaces" -}}
{{- $ns := .Values.actuators.podIsolation.namespaces | default (list .Release.Namespace) -}}
{{- toJson (uniq $ns) -}}
{{- end -}}

{{/*
Fail early, with a message that says what to change, when the values cannot
work together: the policies need an actuator that is switched off, or a
credential has nowhere to come from.
*/}}
{{- define "guardian.validate" -}}
{{- if not .Values.kafka.bootstrapServers -}}
{{- fail "kafka.bootstrapServers is required: the bootstrap servers of the Kafka cluster to guard (e.g. --set kafka.bootstrapServers=my-kafka:9092)" -}}
{{- end -}}
{{- $sasl := hasPrefix "SASL_" .Values.kafka.securityProtocol -}}
{{- if and $sasl (not .Values.kafka.sasl.mechanism) -}}
{{- fail (printf "kafka.securityProtocol is %s: set kafka.sasl.mechanism and kafka.sasl.existingSecret" .Values.kafka.securityProtocol) -}}
{{- end -}}
{{- if and .Values.kafka.sasl.mechanism (not $sasl) -}}
{{- fail (printf "kafka.sasl.mechanism is set but kafka.securityProtocol is %s: use SASL_PLAINTEXT or SASL_SSL" .Values.kafka.securityProtocol) -}}
{{- end -}}
{{- if and .Values.kafka.sasl.mechanism (not .Values.kafka.sasl.existingSecret) -}}
{{- fail "kafka.sasl.existingSecret is required with kafka.sasl.mechanism: a Secret with the SASL username and password" -}}
{{- end -}}
{{- if and .Values.kafka.tls.enabled (not .Values.kafka.tls.existingSecret) -}}
{{- fail "kafka.tls.existingSecret is required with kafka.tls.enabled: a Secret with the CA certificate" -}}
{{- end -}}
{{- if and .Values.kafka.tls.enabled (not (hasSuffix "SSL" .Values.kafka.securityProtocol)) -}}
{{- fail (printf "kafka.tls.enabled needs kafka.securityProtocol SSL or SASL_SSL, not %s" .Values.kafka.securityProtocol) -}}
{{- end -}}
{{- $external := or .Values.redis.external.url .Values.redis.external.existingSecret -}}
{{- if and $external .Values.redis.internal.enabled -}}
{{- fail "redis: choose one ledger: set redis.internal.enabled=false to use redis.external, or clear redis.external" -}}
{{- end -}}
{{- if not (or $external .Values.redis.internal.enabled) -}}
{{- fail "redis: no ledger configured: set redis.external.url, redis.external.existingSecret or redis.internal.enabled=true" -}}
{{- end -}}
{{- if and .Values.redis.internal.enabled .Values.redis.internal.auth.enabled (not .Values.redis.internal.auth.existingSecret) -}}
{{- fail "redis.internal.auth.existingSecret is required with redis.internal.auth.enabled: a Secret with the Redis password" -}}
{{- end -}}
{{- range $p := .Values.policies.policies -}}
{{- range $i, $rung := $p.ladder -}}
{{- if and (eq (toString $rung.action) "isolate_pod") (not $.Values.actuators.podIsolation.enabled) -}}
{{- fail (printf "policy %q rung %d is isolate_pod but actuators.podIsolation.enabled is false: remove the rung or enable pod isolation" (toString $p.name) $i) -}}
{{- end -}}
{{- if and $rung.scale_owner (not $.Values.actuators.podIsolation.scaleOwner) -}}
{{- fail (printf "policy %q rung %d has scale_owner: true but actuators.podIsolation.scaleOwner is false: the engine would have no permission to scale" (toString $p.name) $i) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Environment shared by every guardian container: GUARDIAN_<SECTION>__<KEY>. */}}
{{- define "guardian.env" -}}
- name: GUARDIAN_KAFKA__BOOTSTRAP_SERVERS
  value: {{ .Values.kafka.bootstrapServers | quote }}
- name: GUARDIAN_KAFKA__SECURITY_PROTOCOL
  value: {{ .Values.kafka.securityProtocol | quote }}
- name: GUARDIAN_KAFKA__CLUSTER
  value: {{ .Values.kafka.cluster | quote }}
{{- with .Values.kafka.metricsUrl }}
- name: GUARDIAN_KAFKA__METRICS_URL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.kafka.sasl }}
{{- if .mechanism }}
- name: GUARDIAN_KAFKA__SASL_MECHANISM
  value: {{ .mechanism | quote }}
- name: GUARDIAN_KAFKA__SASL_USERNAME
  valueFrom:
    secretKeyRef: {name: {{ .existingSecret | quote }}, key: {{ .usernameKey | quote }}}
- name: GUARDIAN_KAFKA__SASL_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ .existingSecret | quote }}, key: {{ .passwordKey | quote }}}
{{- end }}
{{- end }}
{{- if .Values.kafka.tls.enabled }}
- name: GUARDIAN_KAFKA__SSL_CA_LOCATION
  value: /etc/guardian/kafka-tls/{{ .Values.kafka.tls.caKey }}
{{- end }}
{{- if .Values.redis.internal.enabled }}
{{- if .Values.redis.internal.auth.enabled }}
# Kubernetes expands $(REDIS_PASSWORD) from the variable defined just before.
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ .Values.redis.internal.auth.existingSecret | quote }}, key: {{ .Values.redis.internal.auth.passwordKey | quote }}}
- name: GUARDIAN_REDIS__URL
  value: "redis://:$(REDIS_PASSWORD)@{{ include "guardian.redisName" . }}:6379/0"
{{- else }}
- name: GUARDIAN_REDIS__URL
  value: "redis://{{ include "guardian.redisName" . }}:6379/0"
{{- end }}
{{- else if .Values.redis.external.existingSecret }}
- name: GUARDIAN_REDIS__URL
  valueFrom:
    secretKeyRef: {name: {{ .Values.redis.external.existingSecret | quote }}, key: {{ .Values.redis.external.existingSecretKey | quote }}}
{{- else }}
- name: GUARDIAN_REDIS__URL
  value: {{ .Values.redis.external.url | quote }}
{{- end }}
{{- with .Values.topics }}
- name: GUARDIAN_TOPICS__METRICS
  value: {{ .metrics | quote }}
- name: GUARDIAN_TOPICS__METRICS_DLQ
  value: {{ .metricsDlq | quote }}
- name: GUARDIAN_TOPICS__DETECTIONS
  value: {{ .detections | quote }}
- name: GUARDIAN_TOPICS__DECISIONS
  value: {{ .decisions | quote }}
- name: GUARDIAN_TOPICS__TELEMETRY
  value: {{ .telemetry | quote }}
- name: GUARDIAN_TOPICS__CLIENT_STATS
  value: {{ .clientStats | quote }}
- name: GUARDIAN_TOPICS__PARTITIONS
  value: {{ .partitions | quote }}
- name: GUARDIAN_TOPICS__REPLICATION_FACTOR
  value: {{ .replicationFactor | quote }}
- name: GUARDIAN_TOPICS__RETENTION_MS
  value: {{ .retentionMs | int64 | quote }}
{{- end }}
- name: GUARDIAN_POLICY_FILE
  value: /etc/guardian/policies/policies.yaml
{{- if .Values.actuators.podIsolation.enabled }}
- name: GUARDIAN_KUBERNETES__NAMESPACES
  value: {{ include "guardian.isolationNamespaces" . | quote }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Environment of one component: (dict "ctx" $ "component" "api"). */}}
{{- define "guardian.componentEnv" -}}
{{- if eq .component "api" }}
- name: GUARDIAN_API__HOST
  value: "0.0.0.0"
- name: GUARDIAN_API__PORT
  value: {{ .ctx.Values.api.port | quote }}
{{- else }}
- name: GUARDIAN_INGEST__METRICS_PORT
  value: {{ .ctx.Values.metricsPort | quote }}
{{- end }}
{{- end -}}

{{/* Volumes shared by every guardian pod. */}}
{{- define "guardian.volumes" -}}
- name: policies
  configMap:
    name: {{ include "guardian.componentName" (dict "ctx" . "component" "policies") }}
# The root filesystem is read-only; Python and libraries get a writable /tmp.
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- if .Values.kafka.tls.enabled }}
- name: kafka-tls
  secret:
    secretName: {{ .Values.kafka.tls.existingSecret | quote }}
    items:
      - key: {{ .Values.kafka.tls.caKey | quote }}
        path: {{ .Values.kafka.tls.caKey | quote }}
{{- end }}
{{- end -}}

{{- define "guardian.volumeMounts" -}}
- name: policies
  mountPath: /etc/guardian/policies
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- if .Values.kafka.tls.enabled }}
- name: kafka-tls
  mountPath: /etc/guardian/kafka-tls
  readOnly: true
{{- end }}
{{- end -}}

{{/*
Pod template of a guardian component: (dict "ctx" $ "component" "engine"
"values" .Values.engine "k8sApi" true "ports" (list ...)). Only pods that may
act (`guardian run`) mount the ServiceAccount token, and only when they have
Kubernetes permissions.
*/}}
{{- define "guardian.podTemplate" -}}
{{- $ctx := .ctx -}}
metadata:
  labels:
    {{- include "guardian.componentSelectorLabels" . | nindent 4 }}
  annotations:
    # Roll the pods when the policies change.
    checksum/policies: {{ include (print $ctx.Template.BasePath "/configmap-policies.yaml") $ctx | sha256sum }}
    {{- with $ctx.Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "guardian.serviceAccountName" $ctx }}
  automountServiceAccountToken: {{ .k8sApi }}
  {{- with $ctx.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $ctx.Values.podSecurityContext | nindent 4 }}
  containers:
    - name: {{ .component }}
      image: {{ include "guardian.image" $ctx | quote }}
      imagePullPolicy: {{ $ctx.Values.image.pullPolicy }}
      args:
        {{- toYaml .values.args | nindent 8 }}
      ports:
        {{- toYaml .ports | nindent 8 }}
      env:
        {{- include "guardian.componentEnv" . | nindent 8 }}
        {{- include "guardian.env" $ctx | nindent 8 }}
      {{- with $ctx.Values.extraEnvFrom }}
      envFrom:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .values.livenessProbe }}
      livenessProbe:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .values.readinessProbe }}
      readinessProbe:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      resources:
        {{- toYaml .values.resources | nindent 8 }}
      securityContext:
        {{- toYaml $ctx.Values.containerSecurityContext | nindent 8 }}
      volumeMounts:
        {{- include "guardian.volumeMounts" $ctx | nindent 8 }}
  volumes:
    {{- include "guardian.volumes" $ctx | nindent 4 }}
  {{- with $ctx.Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $ctx.Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $ctx.Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
