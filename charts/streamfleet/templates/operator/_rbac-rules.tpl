{{/*
The operator's permissions, in one place. Exactly the verbs it uses, nothing more:
- livestreams: watch/read, patch finalizers in and out (patch/update of the object);
- livestreams/status: server-side-apply status patches;
- livestreams/finalizers: update, so Secrets it creates can carry a blocking ownerReference to
  their LiveStream (OwnerReferencesPermissionEnforcement);
- secrets: list/watch for the operator's metadata-only watch (RBAC has no metadata-only verb:
  the operator asks for PartialObjectMetadata and never receives data from it), get to read the
  key of a Secret a LiveStream references, create `<name>-publish-key` when a LiveStream has no
  publishKeySecretRef (garbage-collected through the ownerReference);
- events.k8s.io events: the kube-runtime Recorder creates and patches (aggregates) Events.
*/}}
{{/* Granted cluster-wide by a ClusterRole, or per watched namespace by Roles. */}}
{{- define "streamfleet.operator.clusterRules" -}}
- apiGroups: ["streamfleet.io"]
  resources: ["livestreams"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["streamfleet.io"]
  resources: ["livestreams/status"]
  verbs: ["get", "patch"]
- apiGroups: ["streamfleet.io"]
  resources: ["livestreams/finalizers"]
  verbs: ["update"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/* Leader election on a coordination.k8s.io Lease in the release namespace. */}}
{{- define "streamfleet.operator.namespaceRules" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "create", "update", "patch"]
{{- end }}
