-- Health of a spirefed.io FederationMesh, from the conditions the
-- operator writes: Ready, and the kstatus conditions Reconciling and
-- Stalled. Stalled (only a human can fix it: a zone that does not exist, a
-- duplicate trust domain, a hub or link that is not a member) is Degraded;
-- Ready is Healthy; zones not Ready yet or pairs settling are Progressing.
local hs = {}
local progressing = {
  ZonesNotReady = true, PairsNotEstablished = true,
  Deleting = true,
}
if obj.metadata ~= nil and obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Deleting: the operator removes what the mesh wrote in its zones"
  return hs
end
if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator"
  return hs
end
if obj.metadata.generation ~= nil and (obj.status.observedGeneration == nil or obj.status.observedGeneration < obj.metadata.generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to act on generation " .. obj.metadata.generation
  return hs
end
local ready = nil
local stalled = nil
for _, condition in ipairs(obj.status.conditions) do
  if condition.type == "Ready" then ready = condition end
  if condition.type == "Stalled" then stalled = condition end
end
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = stalled.reason .. ": " .. stalled.message
  return hs
end
if ready == nil or ready.status == "Unknown" then
  hs.status = "Progressing"
  hs.message = ready and ready.message or "Waiting for the operator"
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
  return hs
end
if progressing[ready.reason] then
  hs.status = "Progressing"
else
  hs.status = "Degraded"
end
hs.message = ready.reason .. ": " .. ready.message
return hs
