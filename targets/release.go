package targets

import (
	"fmt"

	"github.com/podlb/podlb/providers"
)

// releaseFailedMessage says why a binding's group could not be released
// and, when only a person can fix it, the way out that does not wait for
// the cloud: letting go of the Service, whose group podlb's sweep deletes
// once nothing forwards to it any more.
func releaseFailedMessage(k providers.BindingKey, ref string, err error) string {
	msg := fmt.Sprintf("%s port %d: releasing %s: %v", k.Provider, k.Port, ref, err)
	if providers.IsUserError(err) {
		msg += fmt.Sprintf("; or delete the Service's finalizer %s to leave the group behind (podlb deletes it once nothing uses it)", Finalizer)
	}
	return msg
}
