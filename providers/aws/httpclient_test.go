package aws

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
)

// recordingClient answers every call with an empty DescribeTargetGroups
// result and keeps the request, body unread, as a transport would hold it
// while it finishes writing.
type recordingClient struct{ reqs []*http.Request }

func (c *recordingClient) Do(req *http.Request) (*http.Response, error) {
	c.reqs = append(c.reqs, req)
	return &http.Response{StatusCode: http.StatusOK, Request: req,
		Header: http.Header{"Content-Type": {"text/xml"}},
		Body: io.NopCloser(strings.NewReader(`<DescribeTargetGroupsResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/">` +
			`<DescribeTargetGroupsResult><TargetGroups/></DescribeTargetGroupsResult></DescribeTargetGroupsResponse>`))}, nil
}

// The transport can still be reading a request's body when the SDK, the
// response's headers in hand, closes it: net/http reads once more after
// the declared length to check nothing follows, and an error there closes
// the connection under the response. The provider's calls give the
// transport a body of its own, whole and without error after the SDK's
// close.
func TestRequestBodiesOutliveTheSDKsClose(t *testing.T) {
	rec := &recordingClient{}
	p, err := New(context.Background(), Options{Cluster: "test-cluster", Region: "us-east-1",
		ELBv2Endpoint: "http://127.0.0.1:1", EC2Endpoint: "http://127.0.0.1:1", Credentials: simCredentials, httpClient: rec})
	if err != nil {
		t.Fatal(err)
	}
	const arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef"
	if _, err := p.groupLookup(false)(context.Background(), []string{arn}); err != nil {
		t.Fatal(err)
	}
	if len(rec.reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(rec.reqs))
	}
	req := rec.reqs[0]
	var sent strings.Builder
	if _, err := io.Copy(&sent, io.LimitReader(req.Body, req.ContentLength)); err != nil || int64(sent.Len()) != req.ContentLength {
		t.Fatalf("after the call returned, %d of the body's %d bytes could be read (%v)", sent.Len(), req.ContentLength, err)
	}
	if n, err := io.Copy(io.Discard, req.Body); n != 0 || err != nil {
		t.Errorf("the transport's check read after the declared length got %d bytes and error %v; want none, or it closes the connection", n, err)
	}
	if !strings.Contains(sent.String(), "Action=DescribeTargetGroups") {
		t.Errorf("body sent: %q", sent.String())
	}
}
