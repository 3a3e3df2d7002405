"""Values for every toggle of the chart. Each scenario is rendered, linted and validated against
the Kubernetes schemas by test_render.py; the focused tests use some of them again."""

EXTERNAL_REDIS = {
    "redis": {
        "bundled": False,
        "external": {
            "url": "rediss://redis.example.internal:6380/0",
            "existingSecret": "registry-redis",
            "existingSecretPasswordKey": "password",
        },
    }
}

SENTINEL = {"redis": {"mode": "sentinel"}}

EXTERNAL_SENTINEL = {
    "redis": {
        "bundled": False,
        "external": {
            "existingSecret": "registry-redis",
            "existingSecretPasswordKey": "password",
            "sentinel": {
                "hosts": ["s1.redis.example.internal:26379", "s2.redis.example.internal:26379", "[fd00::3]:26379"],
                "masterName": "registry",
                "db": 2,
                "tls": True,
                "auth": "same",
                "replicaAckMs": 50,
            },
        },
    }
}

SCENARIOS: dict[str, dict] = {
    "defaults": {},
    "redis-sentinel": SENTINEL,
    "redis-sentinel-hard-no-password-persistence": {
        "redis": {
            "mode": "sentinel",
            "auth": {"enabled": False},
            "persistence": {"enabled": True},
            "sentinel": {"antiAffinity": "hard", "podDisruptionBudget": {"enabled": False}},
        },
        "networkPolicy": {"enabled": True},
    },
    "redis-sentinel-network-policy": {"redis": {"mode": "sentinel"}, "networkPolicy": {"enabled": True}},
    "redis-external-sentinel": EXTERNAL_SENTINEL,
    "redis-external": EXTERNAL_REDIS,
    "redis-external-no-password": {
        "redis": {"bundled": False, "external": {"url": "redis://redis.example.internal:6379/0"}}
    },
    "redis-no-password": {"redis": {"auth": {"enabled": False}}},
    "redis-existing-password": {
        "redis": {"auth": {"existingSecret": "my-redis", "existingSecretPasswordKey": "pw"}}
    },
    "redis-persistence": {
        "redis": {
            "persistence": {"enabled": True, "storageClass": "fast-ssd", "size": "5Gi"},
            "maxmemory": "512mb",
            "extraArgs": ["--tcp-keepalive", "60"],
        }
    },
    "redis-persistence-everysec": {
        "redis": {"persistence": {"enabled": True, "appendfsync": "everysec"}}
    },
    "service-monitor": {"metrics": {"serviceMonitor": {"enabled": True}}},
    "service-monitor-labels": {
        "metrics": {
            "serviceMonitor": {
                "enabled": True,
                "namespace": "monitoring",
                "additionalLabels": {"release": "kube-prometheus-stack"},
                "relabelings": [{"action": "labeldrop", "regex": "pod_template_hash"}],
                "metricRelabelings": [{"action": "drop", "regex": "go_.*", "sourceLabels": ["__name__"]}],
            }
        }
    },
    "pod-monitor": {"metrics": {"podMonitor": {"enabled": True}}},
    "prometheus-rule": {"metrics": {"prometheusRule": {"enabled": True}}},
    "prometheus-rule-extra": {
        "metrics": {
            "prometheusRule": {
                "enabled": True,
                "additionalLabels": {"team": "video"},
                "extraRules": [{"alert": "Custom", "expr": "vector(1) > 2", "for": "1m"}],
            }
        }
    },
    "dashboards": {"dashboards": {"enabled": True}},
    "dashboards-elsewhere": {
        "dashboards": {
            "enabled": True,
            "namespace": "grafana",
            "annotations": {"grafana_folder": "Streaming"},
        }
    },
    "hpa": {"edge": {"autoscaling": {"enabled": True}}},
    "hpa-custom": {
        "edge": {
            "autoscaling": {
                "enabled": True,
                "minReplicas": 3,
                "maxReplicas": 30,
                "targetMemoryUtilizationPercentage": 70,
                "metrics": [
                    {
                        "type": "Pods",
                        "pods": {
                            "metric": {"name": "streamfleet_edge_connections_active"},
                            "target": {"type": "AverageValue", "averageValue": "500"},
                        },
                    }
                ],
            }
        }
    },
    "network-policy": {"networkPolicy": {"enabled": True}},
    "rtmps-existing-secret": {"edge": {"tls": {"enabled": True, "existingSecret": "edge-cert"}}},
    "rtmps-only-cert-manager-proxy-protocol": {
        "edge": {
            "rtmp": {"enabled": False},
            "tls": {
                "enabled": True,
                "certManager": {
                    "enabled": True,
                    "issuerRef": {"name": "letsencrypt"},
                    "dnsNames": ["ingest.example.com"],
                    "renewBefore": "720h",
                },
            },
            "proxyProtocol": {"mode": "v2", "trustedCIDRs": ["10.0.0.0/16"]},
            "service": {
                "annotations": {"service.beta.kubernetes.io/aws-load-balancer-proxy-protocol": "*"},
                "externalTrafficPolicy": "Cluster",
            },
        },
        "networkPolicy": {"enabled": True},
    },
    "network-policy-restricted": {
        "networkPolicy": {
            "enabled": True,
            "rtmpFrom": [{"ipBlock": {"cidr": "203.0.113.0/24"}}],
            "metricsFrom": [
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
            ],
        }
    },
    "network-policy-external-redis": {"networkPolicy": {"enabled": True}, **EXTERNAL_REDIS},
    "pdb-disabled": {
        "edge": {"podDisruptionBudget": {"enabled": False}},
        "operator": {"podDisruptionBudget": {"enabled": False}},
    },
    "single-replicas": {"edge": {"replicaCount": 1}, "operator": {"replicaCount": 1}},
    "crds-disabled": {"crds": {"enabled": False}},
    "crds-not-kept": {"crds": {"keep": False}},
    "relay-existing-secret": {
        "edge": {"relay": {"existingSecret": "fleet-relay", "existingSecretKey": "token"}}
    },
    "service-nodeport": {
        "edge": {"service": {"type": "NodePort", "nodePort": 31935, "externalTrafficPolicy": "Cluster"}}
    },
    "service-clusterip": {"edge": {"service": {"type": "ClusterIP", "externalTrafficPolicy": ""}}},
    "srt-mixed": {"edge": {"srt": {"enabled": True, "passphraseSecret": "srt-passphrase"}}},
    "srt-separate-nodeport": {
        "edge": {
            "service": {"type": "NodePort", "nodePort": 31935, "externalTrafficPolicy": "Cluster"},
            "srt": {"enabled": True, "service": "separate", "nodePort": 31890},
        },
        "networkPolicy": {"enabled": True},
    },
    "service-lb-options": {
        "edge": {
            "service": {
                "annotations": {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"},
                "loadBalancerSourceRanges": ["198.51.100.0/24", "203.0.113.0/24"],
                "loadBalancerClass": "service.k8s.aws/nlb",
                "allocateLoadBalancerNodePorts": False,
                "ipFamilyPolicy": "PreferDualStack",
                "ipFamilies": ["IPv4", "IPv6"],
            }
        }
    },
    "hard-anti-affinity": {"edge": {"podAntiAffinity": "hard", "topologySpreadConstraints": []}},
    "custom-timing": {
        "edge": {"leaseTTL": "6s", "drainTimeoutSeconds": 60, "preStopSleepSeconds": 0}
    },
    "extras": {
        "commonLabels": {"team": "video"},
        "global": {"imagePullSecrets": [{"name": "regcred"}]},
        "edge": {
            "image": {"digest": "sha256:" + "a" * 64},
            "extraArgs": ["--max-connections=5000"],
            "extraEnv": [{"name": "EXTRA", "value": "1"}],
            "extraVolumes": [{"name": "extra", "emptyDir": {}}],
            "extraVolumeMounts": [{"name": "extra", "mountPath": "/extra"}],
            "podAnnotations": {"a": "b"},
            "podLabels": {"c": "d"},
            "priorityClassName": "streaming",
            "nodeSelector": {"pool": "edge"},
            "tolerations": [{"key": "edge", "operator": "Exists", "effect": "NoSchedule"}],
        },
        "operator": {
            "image": {"tag": "dev"},
            "extraArgs": ["--gc-interval=10m"],
            "serviceAccount": {"annotations": {"iam": "role"}},
        },
    },
    # A second, edge-only release (a regional pool for edgeSelector): the first release's Redis,
    # relay and key-hash secrets, operator and CRD.
    "edge-pool": {
        "crds": {"enabled": False},
        "operator": {"enabled": False},
        "keyHash": {"existingSecret": "sf-streamfleet-key-hash"},
        "edge": {"relay": {"existingSecret": "sf-streamfleet-relay"}},
        "redis": {
            "bundled": False,
            "external": {
                "url": "redis://sf-streamfleet-redis.streamfleet.svc:6379/0",
                "existingSecret": "sf-streamfleet-redis",
                "existingSecretPasswordKey": "redis-password",
            },
        },
        "metrics": {
            "serviceMonitor": {"enabled": True},
            "podMonitor": {"enabled": True},
            "prometheusRule": {"enabled": True},
        },
        "networkPolicy": {"enabled": True},
    },
    "everything": {
        "metrics": {
            "serviceMonitor": {"enabled": True},
            "podMonitor": {"enabled": True},
            "prometheusRule": {"enabled": True},
        },
        "dashboards": {"enabled": True},
        "networkPolicy": {"enabled": True},
        "edge": {"autoscaling": {"enabled": True}},
        "redis": {"persistence": {"enabled": True}},
    },
}
