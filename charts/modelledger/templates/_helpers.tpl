{{/* Names and labels shared by the templates. */}}

{{- define "modelledger.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "modelledger.fullname" -}}
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

{{- define "modelledger.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelledger.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Every object's labels: the standard ones and commonLabels (which cannot override them). */}}
{{- define "modelledger.labels" -}}
{{- $standard := dict
  "app.kubernetes.io/name" (include "modelledger.name" .)
  "app.kubernetes.io/instance" .Release.Name
  "app.kubernetes.io/version" .Chart.AppVersion
  "app.kubernetes.io/managed-by" .Release.Service
  "helm.sh/chart" (printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_")
-}}
{{- toYaml (merge $standard (deepCopy (.Values.commonLabels | default dict))) -}}
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

{{/* The health endpoint (/healthz, /readyz) the probes, the -health Service and `helm test` use. */}}
{{- define "modelledger.healthPort" -}}
{{- .Values.health.port | default 8080 -}}
{{- end -}}

{{/*
"true" when the CustomResourceDefinition named by the argument's `name` exists in the cluster and is
not this release's (applied by kubectl or GitOps, or owned by another release): the chart then leaves it
alone instead of failing the install on Helm's ownership check. Always empty in `helm template`.
*/}}
{{- define "modelledger.crdManagedElsewhere" -}}
{{- $existing := lookup "apiextensions.k8s.io/v1" "CustomResourceDefinition" "" .name -}}
{{- if $existing -}}
{{- $annotations := dig "metadata" "annotations" dict $existing -}}
{{- $release := get $annotations "meta.helm.sh/release-name" -}}
{{- $namespace := get $annotations "meta.helm.sh/release-namespace" -}}
{{- if not (and (eq $release .root.Release.Name) (eq $namespace .root.Release.Namespace)) -}}true{{- end -}}
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
