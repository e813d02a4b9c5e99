# The load tool as a FROM-scratch image, so chaos/compose.sh can run it inside
# the compose network as the `loadgen` service (chaos/compose.chaos.yml).
# The build context is a directory holding only the static binary (the
# repository's .dockerignore admits bin/node alone); compose.sh does:
#
#   (cd bench && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o ../bin/loadgen ./loadgen)
#   mkdir ctx && cp bin/loadgen ctx/
#   docker build -t tierlimit-loadgen:dev -f chaos/loadgen.Dockerfile ctx
FROM scratch
COPY loadgen /loadgen
USER 65532:65532
ENTRYPOINT ["/loadgen"]
