# secstream worker image: `docker build -t secstream .` then `docker run secstream run`
# (see docker-compose.yml for the Kafka + Qdrant + Prometheus + Grafana stack).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1

# CPU torch FIRST, from PyTorch's CPU index: a bare `torch` requirement resolved by
# `pip install .` would pull a multi-GB CUDA build. Later installs find it satisfied.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

WORKDIR /src
COPY pyproject.toml README.md ./
COPY schemas/ schemas/
COPY encoders/ encoders/
COPY detection/ detection/
COPY streams/ streams/
COPY bench/ bench/
RUN pip install .

# Run unprivileged; settings.data_dir (.secstream) is relative to the working directory.
RUN useradd --create-home --uid 10001 secstream \
    && mkdir -p /var/lib/secstream && chown secstream:secstream /var/lib/secstream
USER secstream
WORKDIR /var/lib/secstream

EXPOSE 8000
ENTRYPOINT ["secstream"]
CMD ["run"]
