{{/* Name of every object of the release: "<release>-kiln" unless the release is already named kiln. */}}
{{- define "kiln.fullname" -}}
{{- if contains "kiln" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-kiln" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kiln.serviceAccountName" -}}
{{- default (include "kiln.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "kiln.lockNamespace" -}}
{{- default .Release.Namespace .Values.lockNamespace -}}
{{- end -}}

{{- define "kiln.selectorLabels" -}}
app.kubernetes.io/name: kiln
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "kiln.labels" -}}
{{ include "kiln.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "kiln.operatorImage" -}}
{{- printf "%s:%s" .Values.operator.image.repository (default .Chart.AppVersion .Values.operator.image.tag) -}}
{{- end -}}

{{- define "kiln.builderImage" -}}
{{- printf "%s:%s" .Values.builder.image.repository (default .Chart.AppVersion .Values.builder.image.tag) -}}
{{- end -}}
