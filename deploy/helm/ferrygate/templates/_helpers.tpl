{{- define "ferrygate.name" -}}{{ .Release.Name }}-ferrygate{{- end -}}
{{- define "ferrygate.labels" -}}app.kubernetes.io/name: ferrygate
app.kubernetes.io/instance: {{ .Release.Name }}{{- end -}}
