# feedgen's container image: `feedgen run` (ingest + scheduled jobs + server on port 8000) by default, or any other
# `feedgen` command. Settings are FEEDGEN_* variables (README, "Configuration"); the store is in the /data volume.
#   docker build -t feedgen .
#   podman build --format docker -t feedgen .      (--format docker keeps the HEALTHCHECK)
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
# The dependencies get their own layer, so a change to the code alone reinstalls only the code.
COPY pyproject.toml ./
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/feedgen \
    && python -c "import tomllib; t = tomllib.load(open('pyproject.toml', 'rb')); p = t['project']; \
print('\n'.join(t['build-system']['requires'] + p['dependencies'] + p['optional-dependencies']['postgres']))" \
    >requirements.txt \
    && /opt/feedgen/bin/pip install -q -r requirements.txt
COPY README.md ./
COPY feedgen ./feedgen
COPY algorithms ./algorithms
# The image needs neither pip nor setuptools at run time.
RUN /opt/feedgen/bin/pip install -q --no-deps --no-build-isolation . \
    && /opt/feedgen/bin/pip uninstall -q -y pip setuptools

FROM ${PYTHON_IMAGE}
RUN useradd --create-home --uid 10001 feedgen && mkdir /data && chown feedgen /data
COPY --from=build /opt/feedgen /opt/feedgen
ENV PATH=/opt/feedgen/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    FEEDGEN_DATABASE=/data/feedgen.db
USER feedgen
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
    CMD python -c "import os, urllib.request as r; \
r.urlopen('http://127.0.0.1:%s/xrpc/_health' % os.environ.get('FEEDGEN_PORT', '8000'), timeout=4)"
CMD ["feedgen", "run"]
