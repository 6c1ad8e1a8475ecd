-- ArgoCD health of a modelledger.io ModelDeployment (resource.customizations.health.modelledger.io_ModelDeployment).
-- Healthy: the desired version serves, fully available. Progressing: the operator has not caught up
-- with the latest spec yet, or a rollout is under way. Degraded: RolledBack (the desired version is
-- quarantined), Failed (e.g. the version does not exist) or Degraded (no stable revision to return to).
local hs = {}

local function condition(obj, kind)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function ready_message(obj, fallback)
  local ready = condition(obj, "Ready")
  if ready ~= nil and ready.message ~= nil and ready.message ~= "" then
    return ready.message
  end
  return fallback
end

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

local phase = status.phase
if phase == "Healthy" then
  hs.status = "Healthy"
  hs.message = ready_message(obj, "Serving " .. tostring(status.servingVersion))
elseif phase == "Progressing" then
  hs.status = "Progressing"
  hs.message = ready_message(obj, "Rolling out revision " .. tostring(status.currentRevision))
elseif phase == "RolledBack" or phase == "Failed" or phase == "Degraded" then
  hs.status = "Degraded"
  hs.message = phase .. ": " .. ready_message(obj, "see `modelledger history`")
else
  hs.status = "Unknown"
  hs.message = "Unknown phase " .. tostring(phase)
end
return hs
