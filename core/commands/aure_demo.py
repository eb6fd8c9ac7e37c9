"""The Aure example from the seed article, as a believable plan (pure data).

Aure wants to become a more united municipality with a centre everyone is
proud of and uses. Midway, the desired result is positive engagement and
good, broad participation processes carried out. The council has held a
short workshop to own the goal; a larger one with the council and the
administration comes next.
"""

from __future__ import annotations

from typing import Any

from core.commands.edits import new_plan, phase_template
from core.events import bodies as b
from core.events.bodies import Body
from core.events.ids import new_uuid7
from core.projections.positions import spread

TITLE = "Et samlet Aure med et sentrum alle er stolte av"

QUESTIONS = {
    "who_are_we": "En kommune med mange grender og sterk grendetilhørighet, "
    "der sentrum ikke oppleves som felles for alle.",
    "knowledge_base": "Befolkningstall og flyttemønstre, sentrumsanalyse fra 2019; "
    "vi trenger mer kunnskap om hva ungdom og eldre bruker sentrum til.",
    "where_to": "Et levende sentrum som alle innbyggerne er stolte av og tar i bruk.",
    "what_we_do": "Arbeidsverksteder med politikere, gjestebud i grendene, "
    "innbyggerundersøkelse og folkemøte om sentrumsplanen.",
    "resources": "Prosjektleder i 50 % stilling, prosess-støtte fra Distriktssenteret, "
    "veiledning og skjønnsmidler fra fylkeskommunen.",
    "actors": "Kommunestyret, administrativ ledelse, grendelagene, næringslivet og ungdomsrådet.",
}

PHASE_DATES = [
    ("2020-09-01", "2020-11-30", "2020-09-07", "2020-12-04", "done"),
    ("2020-12-01", "2021-03-31", "2020-12-07", None, "ongoing"),
    ("2021-04-01", "2021-06-30", None, None, "planned"),
    ("2021-08-01", "2021-10-31", None, None, "planned"),
    ("2021-11-01", "2022-02-28", None, None, "planned"),
    ("2022-03-01", "2022-03-31", None, None, "planned"),
]


def aure_plan() -> tuple[bytes, list[Body]]:
    """The plan id and the events of the Aure demo plan, in the order made."""
    plan, bodies = new_plan(
        template=False,
        title=TITLE,
        municipality="Aure",
        municipality_number="1576",
        county="Møre og Romsdal",
        themes=["sentrumsutvikling", "samhold", "medvirkning"],
        kind="long",
        period_start="2020-09-01",
        period_end="2022-03-31",
    )
    ph = [new_uuid7() for _ in PHASE_DATES]
    template = phase_template()
    positions = spread(len(template))
    for n, (ps, pe, a_s, a_e, status) in enumerate(PHASE_DATES):
        bodies.append(
            b.PhaseAdded(
                phase=ph[n],
                name=template[n]["name"],
                position=positions[n],
                key_question=template[n]["key_question"],
                planned_start=ps,
                planned_end=pe,
                actual_start=a_s,
                actual_end=a_e,
                status=status,  # type: ignore[arg-type]
            )
        )
    bodies.append(
        b.SocietalGoalSet(
            text="Aure er en samlet kommune med et sentrum som alle innbyggerne "
            "er stolte av og tar i bruk.",
            horizon_year=2030,
        )
    )
    bodies.append(
        b.DesiredResultRevised(
            text="Det er skapt positivt engasjement for sentrum, og kommunen har "
            "gjennomført gode og brede medvirkningsprosesser.",
            due="2021-06-30",
        )
    )
    for q, answer in QUESTIONS.items():
        bodies.append(b.KeyQuestionAnswered(question=q, answer=answer))  # type: ignore[arg-type]
    sg1, sg2 = new_uuid7(), new_uuid7()
    sg_pos = spread(2)
    bodies += [
        b.SubGoalAdded(
            sub_goal=sg1,
            position=sg_pos[0],
            status="reached",
            due="2020-11-30",
            text="Kommunestyret eier målet og det ønskede resultatet.",
        ),
        b.SubGoalAdded(
            sub_goal=sg2,
            position=sg_pos[1],
            status="in_progress",
            due="2021-06-30",
            text="Innbyggere fra alle grender har deltatt i medvirkningen.",
        ),
    ]
    needs: list[tuple[int, str, str]] = [
        (0, "process", "Forankring i kommunestyret og administrativ ledelse."),
        (0, "knowledge", "Felles forståelse av utfordringsbildet i sentrum."),
        (1, "knowledge", "Hva bruker ungdom og eldre sentrum til i dag?"),
        (1, "process", "Metode for gjestebud i grendene."),
        (2, "process", "Prosess for å samle seg om et fremtidsbilde."),
        (3, "knowledge", "Finansieringsmuligheter for sentrumstiltak."),
    ]
    for phase_no, kind, text in needs:
        bodies.append(
            b.NeedIdentified(need=new_uuid7(), phase=ph[phase_no], kind=kind, text=text)  # type: ignore[arg-type]
        )
    activities: list[dict[str, Any]] = [
        dict(
            title="Kort arbeidsverksted i kommunestyret",
            phase=ph[0],
            kind="political_workshop",
            date="2020-10-22",
            duration_minutes=90,
            place="Kommunestyresalen",
            mode="physical",
            responsible="Ordfører",
            status="done",
            sub_goal=sg1,
            purpose="Sikre eierskap til mål og ønsket resultat.",
            outcome="Kommunestyret sluttet seg til mål og ønsket resultat.",
        ),
        dict(
            title="Større arbeidsverksted med kommunestyret og administrativ ledelse",
            phase=ph[1],
            kind="workshop",
            date="2021-01-28",
            duration_minutes=240,
            place="Aure samfunnshus",
            mode="hybrid",
            responsible="Kommunedirektør",
            purpose="Forankring og engasjement på tvers av partier og grendetilhørighet; "
            "innspill til aktiviteter og politikernes rolle.",
        ),
        dict(
            title="Gjestebud i grendene",
            phase=ph[1],
            kind="gjestebud",
            date="2021-02-15",
            mode="physical",
            responsible="Prosjektleder",
            sub_goal=sg2,
            method="Innbyggere inviterer naboer hjem og sender inn svarene.",
        ),
        dict(
            title="Innbyggerundersøkelse om sentrum",
            phase=ph[1],
            kind="survey",
            date="2021-03-01",
            mode="digital",
            responsible="Prosjektleder",
        ),
        dict(
            title="Folkemøte om sentrumsplanen",
            phase=ph[2],
            kind="public_meeting",
            date="2021-05-06",
            mode="hybrid",
            place="Aure samfunnshus",
            responsible="Ordfører",
        ),
    ]
    act_ids = []
    for pos, act in zip(spread(len(activities)), activities, strict=True):
        aid = new_uuid7()
        act_ids.append(aid)
        bodies.append(b.ActivityPlanned(activity=aid, position=pos, **act))
    actors: list[dict[str, Any]] = [
        dict(
            name="Kommunestyret",
            type="group",
            category="politicians",
            participation="must",
            influence=3,
            interest=2,
            stance="supportive",
            strategy="collaborate",
        ),
        dict(
            name="Administrativ ledelse",
            type="group",
            category="administration",
            participation="must",
            influence=3,
            interest=3,
            stance="champion",
            strategy="collaborate",
        ),
        dict(
            name="Grendelagene",
            type="organisation",
            category="voluntary",
            participation="should",
            influence=2,
            interest=3,
            stance="sceptical",
            bellwether=True,
            strategy="involve",
        ),
        dict(
            name="Aure næringsforening",
            type="organisation",
            category="business",
            participation="should",
            influence=2,
            interest=2,
            stance="neutral",
            strategy="consult",
        ),
        dict(
            name="Ungdomsrådet",
            type="group",
            category="youth",
            participation="should",
            influence=1,
            interest=2,
            stance="supportive",
            strategy="involve",
        ),
        dict(
            name="Ivar Torset, næringssjef",
            type="person",
            category="administration",
            participation="must",
            influence=2,
            interest=3,
            stance="champion",
            bellwether=True,
            strategy="empower",
            personal_data=True,
        ),
        dict(
            name="Møre og Romsdal fylkeskommune",
            type="organisation",
            category="county",
            participation="can",
            influence=2,
            interest=1,
            stance="supportive",
            strategy="inform",
        ),
        dict(
            name="Distriktssenteret",
            type="organisation",
            category="state",
            participation="can",
            influence=1,
            interest=2,
            stance="supportive",
            strategy="inform",
        ),
    ]
    for actor in actors:
        bodies.append(b.ActorIdentified(actor=new_uuid7(), **actor))
    for category, count in (("politicians", 19), ("administration", 4)):
        bodies.append(
            b.InvolvementRecorded(
                involvement=new_uuid7(),
                activity=act_ids[0],
                category=category,  # type: ignore[arg-type]
                participants=count,
            )
        )
    bodies.append(
        b.DecisionRecorded(
            decision=new_uuid7(),
            body="council",
            date="2020-10-22",
            case_ref="PS 20/45",
            text="Kommunestyret slutter seg til mål og ønsket resultat for sentrumsprosjektet.",
        )
    )
    bodies.append(
        b.NoteWritten(
            note=new_uuid7(),
            target=act_ids[1],
            text="Husk å invitere ungdomsrådet og grendelagene til det store arbeidsverkstedet.",
        )
    )
    # The demo plan may be exported for research (docs/research.md, "Consent").
    bodies.append(b.ResearchConsentGiven(note="Følgeforskning i Veiledningspiloten (demo)."))
    return plan, bodies
