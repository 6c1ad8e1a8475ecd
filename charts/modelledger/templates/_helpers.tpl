{{/* Names and labels shared by the templates. */}}

{{- define "modelledger.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "modelledger.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "modelledger.labels" -}}
{{ include "modelledger.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "modelledger.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "modelledger.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "modelledger.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* "true" when Kopf peering elects the active replica (only without the Lease), else empty. */}}
{{- define "modelledger.peering" -}}
{{- if and .Values.peering.enabled (not .Values.leaderElection.enabled) -}}true{{- end -}}
{{- end -}}

{{/* Fail early on combinations the schema cannot express. */}}
{{- define "modelledger.validate" -}}
{{- $le := .Values.leaderElection -}}
{{- if and (gt (int .Values.replicaCount) 1) (not $le.enabled) (not .Values.peering.enabled) -}}
{{- fail "replicaCount > 1 needs leaderElection.enabled=true (or peering.enabled=true): exactly one replica may act" -}}
{{- end -}}
{{- if and $le.enabled (not (gt (int $le.leaseDurationSeconds) (int $le.renewDeadlineSeconds))) -}}
{{- fail "leaderElection: leaseDurationSeconds must be longer than renewDeadlineSeconds" -}}
{{- end -}}
{{- if and $le.enabled (not (gt (mulf $le.renewDeadlineSeconds 1.0) (mulf $le.retryPeriodSeconds 1.2))) -}}
{{- fail "leaderElection: renewDeadlineSeconds must be longer than 1.2 x retryPeriodSeconds" -}}
{{- end -}}
{{- if and .Values.prometheus.ca.configMapName .Values.prometheus.ca.secretName -}}
{{- fail "prometheus.ca: set configMapName or secretName, not both" -}}
{{- end -}}
{{- end -}}

{{/* CEL variables shared by the version-setter admission policies (validating and mutating). */}}
{{- define "modelledger.versionSetterVariables" -}}
- name: changed
  expression: request.operation == 'CREATE' || object.spec.version != oldObject.spec.version
- name: annotations
  expression: "has(object.metadata.annotations) ? object.metadata.annotations : {}"
- name: old
  expression: >-
    request.operation == 'UPDATE' && has(oldObject.metadata.annotations) ? oldObject.metadata.annotations : {}
- name: setter
  expression: >-
    {
      "modelledger.io/version-set-by": request.userInfo.username,
      "modelledger.io/version-set-by-uid": has(request.userInfo.uid) ? request.userInfo.uid : "",
      "modelledger.io/version-set-by-groups": has(request.userInfo.groups) ? request.userInfo.groups.join(",") : "",
      "modelledger.io/version-set-for": string(object.spec.version)
    }
{{- end -}}
