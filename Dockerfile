# syntax=docker/dockerfile:1
#
# podlb-controller image: a static binary on distroless, run as non-root.
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) -t podlb-controller .
# The binary is the one `make build` produces: CGO off, -trimpath, the
# version stamped through -ldflags.

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src
# Modules first, so source edits reuse the download layer.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG TARGETOS
ARG TARGETARCH
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X github.com/podlb/podlb/internal/version.Version=${VERSION}" \
    -o /out/podlb-controller ./cmd/podlb-controller

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/podlb-controller /podlb-controller
USER 65532:65532
ENTRYPOINT ["/podlb-controller"]
