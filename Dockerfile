# The operator image: the package from this repository on a pinned slim Python, run as non-root.
# Build: hack/build-image.sh (needs a Docker engine; none runs on the project's CI machines).
FROM python:3.11.7-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11.7-slim-bookworm
# Flux git mode commits to the environment repository with the git command line, over HTTPS or ssh.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git openssh-client ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /install /usr/local
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin bluegreen
USER 10001
ENV PYTHONUNBUFFERED=1
ENTRYPOINT ["kopf", "run", "-m", "bluegreen.handlers"]
CMD ["--all-namespaces"]
