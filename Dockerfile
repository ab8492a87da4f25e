# The operator's image for Docker users; `make image` builds the same image
# without a Docker daemon (hack/image): the static binary at
# /spire-federation-operator, CA certificates, user 65532:65532, no shell.
#   docker build -t ghcr.io/spirefed/spire-federation-operator:0.1.0 \
#     --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) .
FROM golang:1.26.5 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG TARGETARCH=amd64
RUN CGO_ENABLED=0 GOOS=linux GOARCH=$TARGETARCH \
    go build -trimpath -buildvcs=false -ldflags="-s -w -buildid=" -o /out/spire-federation-operator .

# distroless static: CA certificates from Debian's ca-certificates,
# /etc/passwd with nonroot (65532), an empty /tmp, no shell.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.source="https://github.com/spirefed/spire-federation-operator" \
      org.opencontainers.image.revision="$REVISION" \
      org.opencontainers.image.version="$VERSION" \
      org.opencontainers.image.title="spire-federation-operator"
COPY --from=build /out/spire-federation-operator /spire-federation-operator
USER 65532:65532
ENTRYPOINT ["/spire-federation-operator"]
