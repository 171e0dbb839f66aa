{{- define "skein-worker.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "skein-worker.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "skein-worker.labels" -}}
app.kubernetes.io/name: {{ include "skein-worker.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "skein-worker.selector" -}}
app.kubernetes.io/name: {{ include "skein-worker.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
