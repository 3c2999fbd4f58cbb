{{/* The chart's name. */}}
{{- define "paddock.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's full name, at most 63 characters. */}}
{{- define "paddock.fullname" -}}
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

{{/* The labels every object carries. */}}
{{- define "paddock.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "paddock.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: paddock
{{- end -}}

{{/* The labels that select the server's pods. */}}
{{- define "paddock.selectorLabels" -}}
app.kubernetes.io/name: {{ include "paddock.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end -}}

{{/* The ServiceAccount's name. */}}
{{- define "paddock.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "paddock.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Whether state is in Postgres. */}}
{{- define "paddock.postgres" -}}
{{- if or .Values.database.url .Values.database.existingSecret -}}true{{- end -}}
{{- end -}}

{{/* The Secret holding the database URL. */}}
{{- define "paddock.databaseSecret" -}}
{{- default (printf "%s-database" (include "paddock.fullname" .)) .Values.database.existingSecret -}}
{{- end -}}

{{/* The Secret holding the bootstrap API key. */}}
{{- define "paddock.bootstrapKeySecret" -}}
{{- default (printf "%s-bootstrap-key" (include "paddock.fullname" .)) .Values.bootstrapKey.existingSecret -}}
{{- end -}}

{{/* The sandbox namespace of the Kubernetes provider. */}}
{{- define "paddock.sandboxNamespace" -}}
{{- default .Release.Namespace .Values.kubernetes.namespace -}}
{{- end -}}

{{/* Refuses values that cannot work, saying why. */}}
{{- define "paddock.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not (include "paddock.postgres" .)) -}}
{{- fail (printf "replicaCount is %d, but state is in SQLite, which is one server's file: set database.url (postgres://...) or database.existingSecret to share a Postgres between replicas, or keep replicaCount at 1" (int .Values.replicaCount)) -}}
{{- end -}}
{{- if and .Values.database.url (not (hasPrefix "postgres" .Values.database.url)) -}}
{{- fail "database.url must be a Postgres URL (postgres://USER:PASSWORD@HOST:PORT/DB); leave it empty for SQLite on the volume" -}}
{{- end -}}
{{- if and .Values.tls.enabled (not .Values.tls.secretName) -}}
{{- fail "tls.enabled needs tls.secretName: a Secret of type kubernetes.io/tls (cert-manager makes one from a Certificate)" -}}
{{- end -}}
{{- end -}}
