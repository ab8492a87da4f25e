package testenv

import (
	"encoding/json"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// fieldOwner is the field manager of objects the harness writes.
var fieldOwner = client.FieldOwner("spirefed-testenv")

var forceOwnership = client.ForceOwnership

// applyPatch is a server-side apply patch of the whole object.
type applyPatch struct{}

func (applyPatch) Type() types.PatchType { return types.ApplyPatchType }

func (applyPatch) Data(obj client.Object) ([]byte, error) { return json.Marshal(obj) }
