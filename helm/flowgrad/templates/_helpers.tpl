{{/* Chart name. */}}
{{- define "flowgrad.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name. */}}
{{- define "flowgrad.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "flowgrad.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "flowgrad.labels" -}}
helm.sh/chart: {{ include "flowgrad.chart" . }}
{{ include "flowgrad.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: flowgrad-fleet
{{- end }}

{{- define "flowgrad.selectorLabels" -}}
app.kubernetes.io/name: {{ include "flowgrad.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "flowgrad.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "flowgrad.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Image of the coordinator and the CLI (CPU build). */}}
{{- define "flowgrad.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Image of the workers: the CUDA build when GPUs are enabled. */}}
{{- define "flowgrad.workerImage" -}}
{{- if .Values.worker.gpu.enabled }}
{{- printf "%s:%s" .Values.image.repository (default (printf "%s-cuda" .Chart.AppVersion) .Values.image.cudaTag) }}
{{- else }}
{{- include "flowgrad.image" . }}
{{- end }}
{{- end }}

{{- define "flowgrad.s3SecretName" -}}
{{- default (printf "%s-s3" (include "flowgrad.fullname" .)) .Values.secrets.s3.existingSecret }}
{{- end }}

{{- define "flowgrad.brokerSecretName" -}}
{{- default (printf "%s-broker" (include "flowgrad.fullname" .)) .Values.secrets.broker.existingSecret }}
{{- end }}

{{/* The queue KEDA watches. */}}
{{- define "flowgrad.tasksQueue" -}}
{{- printf "%s.tasks" .Values.config.broker.topology.prefix }}
{{- end }}

{{/* Secret environment shared by every pod (credentials never go into the ConfigMap). */}}
{{- define "flowgrad.secretEnv" -}}
- name: FLOWGRAD__STORAGE__ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ include "flowgrad.s3SecretName" . }}
      key: {{ .Values.secrets.s3.accessKeyIdKey }}
- name: FLOWGRAD__STORAGE__SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "flowgrad.s3SecretName" . }}
      key: {{ .Values.secrets.s3.secretAccessKeyKey }}
- name: FLOWGRAD__BROKER__URL
  valueFrom:
    secretKeyRef:
      name: {{ include "flowgrad.brokerSecretName" . }}
      key: {{ .Values.secrets.broker.urlKey }}
{{- end }}

{{- define "flowgrad.configEnv" -}}
- name: FLOWGRAD_CONFIG
  value: /etc/flowgrad/flowgrad.toml
- name: HOME
  value: /tmp
{{- end }}

{{- define "flowgrad.prometheusAnnotations" -}}
{{- if .Values.metrics.podAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .Values.config.http.port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end }}

{{- define "flowgrad.probes" -}}
livenessProbe:
  httpGet:
    path: /healthz
    port: http
  initialDelaySeconds: {{ .Values.probes.liveness.initialDelaySeconds }}
  periodSeconds: {{ .Values.probes.liveness.periodSeconds }}
  timeoutSeconds: {{ .Values.probes.liveness.timeoutSeconds }}
  failureThreshold: {{ .Values.probes.liveness.failureThreshold }}
readinessProbe:
  httpGet:
    path: /readyz
    port: http
  initialDelaySeconds: {{ .Values.probes.readiness.initialDelaySeconds }}
  periodSeconds: {{ .Values.probes.readiness.periodSeconds }}
  timeoutSeconds: {{ .Values.probes.readiness.timeoutSeconds }}
  failureThreshold: {{ .Values.probes.readiness.failureThreshold }}
{{- end }}

{{/* Fails rendering on settings that would break graceful shutdown or leak nothing useful. */}}
{{- define "flowgrad.validate" -}}
{{- if le (int .Values.worker.terminationGracePeriodSeconds) (int .Values.config.worker.shutdownGraceSeconds) }}
{{- fail (printf "worker.terminationGracePeriodSeconds (%v) must be larger than config.worker.shutdownGraceSeconds (%v): the worker needs the grace period to finish its iteration, requeue the task and exit" .Values.worker.terminationGracePeriodSeconds .Values.config.worker.shutdownGraceSeconds) }}
{{- end }}
{{- if ge (int .Values.config.worker.maxAttempts) (int .Values.config.broker.topology.deliveryLimit) }}
{{- fail "config.worker.maxAttempts must stay below config.broker.topology.deliveryLimit" }}
{{- end }}
{{- end }}
