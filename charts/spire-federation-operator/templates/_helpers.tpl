{{- define "sfo.name" -}}spire-federation-operator{{- end -}}
{{- define "sfo.secretsNamespace" -}}{{ default .Release.Namespace .Values.secretsNamespace }}{{- end -}}
{{- define "sfo.labels" -}}
app.kubernetes.io/name: {{ include "sfo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}
