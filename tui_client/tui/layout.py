"""What the plan screens show: the plan's fields in order, and the entity tabs."""

from __future__ import annotations

PLAN_FIELDS = (
    "title",
    "municipality",
    "societal_goal",
    "societal_goal_horizon",
    "desired_result",
    "desired_result_due",
    "desired_result_assessment",
    "q_who_are_we",
    "q_knowledge_base",
    "q_where_to",
    "q_what_we_do",
    "q_resources",
    "q_actors",
    "status",
)

# tab id -> (entity kind, columns shown); every field is editable in the form
ENTITY_TABS: dict[str, tuple[str, tuple[str, ...]]] = {
    "sub_goals": ("sub_goal", ("text", "due", "status")),
    "activities": ("activity", ("phase", "title", "kind", "date", "responsible", "status")),
    "actors": (
        "actor",
        ("name", "category", "participation", "influence", "interest", "stance", "bellwether"),
    ),
    "involvement": ("involvement", ("activity", "category", "participants")),
    "decisions": ("decision", ("date", "body", "case_ref", "text")),
    "notes": ("note", ("text",)),
}
