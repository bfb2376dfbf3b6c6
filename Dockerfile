# syntax=docker/dockerfile:1
# chatd: a static binary on a minimal, non-root image.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# The image's sources have no .git, so Go cannot stamp the commit: name the
# build with --build-arg CHATD_VERSION="$(git describe --always --dirty)".
ARG CHATD_VERSION=
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X main.version=${CHATD_VERSION}" -o /out/chatd ./cmd/chatd

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/chatd /usr/local/bin/chatd
USER nonroot:nonroot
EXPOSE 8080
ENV CHATD_ADDR=:8080 CHATD_LOG_FORMAT=json
# The image has no shell or curl: chatd checks itself (GET /healthz).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["/usr/local/bin/chatd", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/chatd"]
