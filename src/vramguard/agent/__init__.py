"""The node agent (`vramguard agent`): every GPU process on the machine, each with its own
leak detector. `discovery` finds the processes, `census` reads them all in one pass,
`fleet` keeps a tracker per process, `metrics` serves them to Prometheus, `logs` writes a
rotating JSONL log per process, and `loop` runs it all every interval."""

from vramguard.agent.discovery import ProcessInfo, Selector
from vramguard.agent.fleet import Fleet
from vramguard.agent.loop import Agent
from vramguard.agent.metrics import AGENT_METRICS, AgentExporter

__all__ = ["AGENT_METRICS", "Agent", "AgentExporter", "Fleet", "ProcessInfo", "Selector"]
