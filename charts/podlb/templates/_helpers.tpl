{{/*
Every object is named podlb-controller, as in manifests/base: the leader
lease, the ledger and the RBAC subjects are found by that name, and podlb
runs once per cluster.
*/}}
{{- define "podlb.name" -}}
podlb-controller
{{- end }}

{{/* Labels that select the controller's pods; never change them, they are immutable on the Deployment. */}}
{{- define "podlb.selectorLabels" -}}
app.kubernetes.io/name: {{ include "podlb.name" . }}
{{- end }}

{{/* Labels on every object: the kustomize base's, plus Helm's release bookkeeping. */}}
{{- define "podlb.labels" -}}
{{ include "podlb.selectorLabels" . }}
app.kubernetes.io/part-of: podlb
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* Leader election only makes sense with a standby. */}}
{{- define "podlb.leaderElect" -}}
{{- gt (int .Values.replicaCount) 1 -}}
{{- end }}

{{/* Rate limits as the controller's flag wants them: Operation=qps:burst,... sorted by operation. */}}
{{- define "podlb.rateLimits" -}}
{{- $items := list }}
{{- range $op, $limit := . }}
{{- $items = append $items (printf "%s=%s" $op $limit) }}
{{- end }}
{{- join "," $items }}
{{- end }}
