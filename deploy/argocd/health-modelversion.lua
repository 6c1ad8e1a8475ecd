-- ArgoCD health of a modelledger.io ModelVersion (resource.customizations.health.modelledger.io_ModelVersion).
-- Healthy: Available. Suspended: Revoked (withdrawn on purpose; kept as evidence while any history
-- names it, so it should not turn the Application Degraded forever). Progressing: not yet observed.
local hs = {}
local status = obj.status
local generation = obj.metadata.generation or 0
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the modelledger operator"
  return hs
end
if status.observedGeneration == nil or status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end
if status.phase == "Available" then
  hs.status = "Healthy"
  hs.message = "Available"
  if status.usedBy ~= nil and #status.usedBy > 0 then
    hs.message = "Available; in the history of " .. table.concat(status.usedBy, ", ")
  end
elseif status.phase == "Revoked" then
  hs.status = "Suspended"
  hs.message = "Revoked: " .. tostring(obj.spec.revocationReason or "")
else
  hs.status = "Unknown"
  hs.message = "Unknown phase " .. tostring(status.phase)
end
return hs
