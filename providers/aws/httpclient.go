package aws

import (
	"bytes"
	"io"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// ownBodies hands the transport its own in-memory copy of each request
// body. The SDK closes a request's body as soon as the response headers
// arrive, and net/http may not have finished with it by then: after
// sending the declared length it reads once more to check that nothing
// follows. The SDK's closed body answers that read with io.EOF as an
// error, on which the transport closes the connection under the response
// still being read; the call fails to decode and the SDK makes it again,
// a second call against the account's budget for one that had
// succeeded. A quick answer (a nearby endpoint, an emulator) makes the
// race likely. The bodies are Query forms of a few kilobytes.
type ownBodies struct{ next aws.HTTPClient }

func (c ownBodies) Do(req *http.Request) (*http.Response, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return c.next.Do(req)
	}
	body, err := io.ReadAll(req.Body)
	_ = req.Body.Close()
	if err != nil {
		return nil, err
	}
	req = req.Clone(req.Context())
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	return c.next.Do(req)
}
