{{- define "sfo.name" -}}spire-federation-operator{{- end -}}
{{- define "sfo.secretsNamespace" -}}{{ default .Release.Namespace .Values.secretsNamespace }}{{- end -}}
{{- define "sfo.serviceAccountName" -}}{{ default (include "sfo.name" .) .Values.serviceAccount.name }}{{- end -}}
{{- define "sfo.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sfo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
{{- define "sfo.labels" -}}
{{ include "sfo.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}
{{- define "sfo.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}
{{- end -}}
