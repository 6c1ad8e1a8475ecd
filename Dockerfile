# syntax=docker/dockerfile:1
# The modelledger operator image: `docker build -t modelledger:dev .`
# Two stages: the build stage installs the package into a virtualenv; the final image gets only that
# virtualenv on a slim Python (every dependency ships as a wheel, so no compiler is needed anywhere).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
# The same path in both stages: a virtualenv's scripts carry its absolute path.
RUN python -m venv /opt/modelledger
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN /opt/modelledger/bin/pip install . \
 && /opt/modelledger/bin/pip uninstall --yes pip setuptools wheel

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="modelledger" \
      org.opencontainers.image.description="Kubernetes operator: version control and automatic rollback of deployed ML models" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/modelledger/modelledger"
# A fixed UID/GID: the chart's securityContext (runAsUser 10001) and runAsNonRoot rely on it.
RUN groupadd --system --gid 10001 modelledger \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin modelledger
COPY --from=build /opt/modelledger /opt/modelledger
# Read-only root filesystem in the pod: no .pyc writes, unbuffered JSON logs to stdout.
ENV PATH=/opt/modelledger/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
# 8080: Kopf's liveness endpoint (/healthz); 9090: /metrics.
EXPOSE 8080 9090
ENTRYPOINT ["modelledger"]
CMD ["run", "--all-namespaces"]
