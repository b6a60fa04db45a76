# The shopbus image: one static binary (CGO_ENABLED=0) on distroless
# static, run as the nonroot user, with no shell. compose.yaml runs every
# component from it (`shopbus serve gateway|order|inventory`); its health
# check is `shopbus healthcheck`, since the image has neither a shell nor
# curl. The build command is the one TestCompose (cmd/shopbus) runs to build
# the binary its end-to-end test starts.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/shopbus ./cmd/shopbus

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/shopbus /usr/local/bin/shopbus
USER nonroot:nonroot
# gateway, order, inventory; their metrics
EXPOSE 8080 8081 8082 9464 9465 9466
ENTRYPOINT ["/usr/local/bin/shopbus"]
CMD ["help"]
