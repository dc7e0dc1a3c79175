# Default image of a task that ships no environment/Dockerfile. The base image is built
# locally by docker/build-base.sh, so nothing here needs a registry.
FROM pivotgym/base:bookworm
WORKDIR /app
