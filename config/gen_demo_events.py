#!/usr/bin/env python3
"""Generate a deterministic day of ShotGrid (Flow Production Tracking) EventLogEntry events.

The output is JSON lines: one event a line, in the flat shape ``shotgun_api3`` returns from
``sg.find("EventLogEntry", ...)``, ids increasing. Regenerate the committed sample with

    python3 config/gen_demo_events.py > config/demo-events.jsonl

The script uses the standard library only (Python 3.9+) and a fixed seed, so the same command
always writes the same bytes (UTF-8, ``\\n`` line ends). ``--count`` and ``--seed`` change the size
and the draw; the defaults produce the committed 3,000-event file.

What it models: one working day (2026-11-02, UTC) of a small studio with two projects, eleven
artists and staff on the web and two scripts (``ingest_bot``, ``publish_bot``). Every row mirrors
``shared/reference/shotgrid-wire.md`` section 3:

* creates write a ``Shotgun_<Type>_New`` row, then one ``_Change`` row per field that got a value,
  each with ``meta.in_create: true`` (server-set fields like ``sg_status_list`` and ``color``
  included), and a back-reference ``_Change`` row on the far side of each link right after the row
  that set it (``actual_attribute_changed``, ``original_event_log_entry_id``);
* Task status changes follow wtg -> rdy -> ip -> rev -> fin with retakes, and each row's
  ``old_value`` is the task's previous ``new_value``;
* multi-entity changes carry ``added`` / ``removed`` lists of enriched links;
* retiring writes the ``retirement_date`` change row and then the ``_Retirement`` row, both with
  ``entity: null``; a revival writes ``_Revival`` with the entity set again;
* thumbnails write an ``image`` change with ``is_transient: true`` and, seconds later, the same row
  with ``is_transient: false``;
* ``Shotgun_User_Login`` rows are site-level (``project: null``).

Guesses (the reference marks them unconfirmed): the exact wording of ``description``, the ``meta``
of login rows, the values carried by ``image`` rows (null), and the key set of enriched links for
entity types without a status field (no ``status`` key). Revivals carry ``"type": "entity_revival"``
(the 2026 form; 2015 rows had no ``type``). Entity links in rows written before an entity was
retired keep the entity, as a daemon reading the log live would have seen them. ``created_at``
never decreases; the rows of one create share a second, as on a real site. A few ids are
skipped, as rolled-back transactions leave them.
"""

import argparse
import datetime
import heapq
import json
import random
import sys
import uuid

SEED = 20261102
FIRST_EVENT_ID = 2011000
EVENT_COUNT = 3000
DAY = datetime.datetime(2026, 11, 2, tzinfo=datetime.timezone.utc)
# Activities per hour at the busiest time of day, for EVENT_COUNT events; scaled with --count.
PEAK_ACTIVITIES_PER_HOUR = 158.0
# Share of rows that should be Task status changes (the loop steers towards it).
TASK_STATUS_SHARE = 0.35

# ---------------------------------------------------------------------------------------------
# The studio
# ---------------------------------------------------------------------------------------------

PROJECTS = [
    # id, name, tank name, short prefix used in playlist names
    (66, "Forest Spirits", "forest_spirits", "FS"),
    (70, "Harbour Lights", "harbour_lights", "HL"),
]

HUMANS = [
    # id, name, login, role, departments, logs in this morning (else a session from last week)
    (20, "Ana Reyes", "areyes", "lead", ["Anim"], True),
    (21, "Ben Okafor", "bokafor", "artist", ["Layout"], True),
    (22, "Chloé Martin", "cmartin", "artist", ["Comp"], False),
    (23, "Dev Patel", "dpatel", "artist", ["FX"], True),
    (24, "Emma Lindqvist", "elindqvist", "artist", ["Lighting"], False),
    (25, "Farid Haddad", "fhaddad", "artist", ["Model"], True),
    (26, "Grace Kim", "gkim", "artist", ["Rig"], False),
    (27, "Hiro Tanaka", "htanaka", "artist", ["Surface"], False),
    (28, "Isabel Costa", "icosta", "coordinator", [], True),
    (29, "Jonas Weber", "jweber", "supervisor", [], False),
    (30, "Kofi Mensah", "kmensah", "artist", ["Anim"], True),
]
API_USERS = [(5, "ingest_bot"), (6, "publish_bot")]

STEPS = {
    # task name: (Step id, Step name, short code used in file names)
    "Layout": (12, "Layout", "lay"),
    "Anim": (13, "Animation", "anim"),
    "FX": (14, "FX", "fx"),
    "Lighting": (15, "Lighting", "lgt"),
    "Comp": (16, "Compositing", "comp"),
    "Model": (17, "Model", "mdl"),
    "Rig": (18, "Rig", "rig"),
    "Surface": (19, "Surfacing", "surf"),
}
# department leads, who review alongside the supervisor
LEADS = {"Layout": "Ana Reyes", "Anim": "Ana Reyes", "FX": "Dev Patel", "Lighting": "Emma Lindqvist",
         "Comp": "Emma Lindqvist", "Model": "Grace Kim", "Rig": "Grace Kim", "Surface": "Grace Kim"}

TASK_TEMPLATES = {
    # TaskTemplate id, name, task names
    "shot": (5, "Shot - Standard", ["Layout", "Anim", "Lighting", "Comp"]),
    "shot_fx": (6, "Shot - FX", ["Layout", "Anim", "FX", "Lighting", "Comp"]),
    "character": (7, "Asset - Character", ["Model", "Rig", "Surface"]),
    "prop": (8, "Asset - Prop", ["Model", "Surface"]),
}
TEMPLATE_TASK_FIRST_ID = 5021

PUBLISHED_FILE_TYPES = {
    # id, name, extension, folder
    "maya": (1, "Maya Scene", "ma", "maya"),
    "abc": (2, "Alembic Cache", "abc", "cache"),
    "nuke": (3, "Nuke Script", "nk", "nuke"),
    "render": (4, "Rendered Image", "exr", "renders"),
    "houdini": (5, "Houdini Scene", "hip", "houdini"),
    "plate": (6, "Image Sequence", "exr", "plates"),
    "texture": (7, "Texture", "tx", "textures"),
}
STEP_PUBLISH = {
    "Layout": ["maya"], "Anim": ["maya", "abc"], "FX": ["houdini", "abc"],
    "Lighting": ["render"], "Comp": ["nuke", "render"], "Model": ["maya", "abc"],
    "Rig": ["maya"], "Surface": ["texture", "maya"],
}

SEQUENCES = {
    66: [("010", 18), ("020", 22), ("030", 16), ("040", 20), ("050", 14)],
    70: [("100", 20), ("110", 17), ("120", 19), ("130", 15)],
}
ASSETS = {
    66: [("spiritFox", "Character"), ("elderTree", "Environment"), ("lanternMoth", "Character"),
         ("mossStone", "Prop"), ("shrineGate", "Prop"), ("riverSpirit", "Character"),
         ("kodamaSmall", "Character"), ("meiHero", "Character"), ("paperLantern", "Prop"),
         ("stoneBridge", "Environment"), ("owlSpirit", "Character"), ("bambooGrove", "Environment")],
    70: [("harbourMaster", "Character"), ("trawlerBoat", "Vehicle"), ("lighthouse", "Environment"),
         ("seagull", "Character"), ("lobsterPot", "Prop"), ("dockCrane", "Prop"),
         ("nellHero", "Character"), ("fishMarket", "Environment"), ("rowingBoat", "Vehicle"),
         ("tideBell", "Prop")],
}
SHOT_BEATS = {
    66: ["Fox spirit slips between the ferns", "Wide of the moonlit clearing",
         "Lantern moths swarm the shrine gate", "Close on Mei, she hears the forest breathe",
         "Elder tree opens its eyes", "Kodama heads turn in unison", "River spirit rises from the pool",
         "Mei runs along the moss path", "Push in on the glowing stone", "Canopy fly-through at dusk",
         "Fox leads Mei past the fallen log", "Rain starts, moths scatter"],
    70: ["Trawler rounds the breakwater in fog", "Harbour master lights his pipe",
         "Lighthouse beam sweeps the bay", "Gulls lift off the pier", "Crane swings a crate overhead",
         "Close on the lobster pots", "Storm waves break over the quay", "Lamps come on along the dock",
         "Nell climbs the lighthouse stairs", "Wide of the sleeping harbour"],
}
VERSION_COMMENTS = [
    "blocking pass", "first pass for review", "addressed dailies notes", "timing tweaks on the turn",
    "new camera from layout", "updated to latest rig", "polish pass", "fixed intersection on frame 1042",
    "render with new light rig", "denoise and grain", "sim v2, more drag", "hold longer on the end",
    "matched plate colour", "tech check fixes", "full res render", "wip, please ignore the hands",
]
NOTE_TEXTS = [
    "Nice progress. The anticipation before the jump needs a couple more frames.",
    "Timing feels rushed at the end, let it breathe a little.",
    "Camera shake is too strong, halve it.",
    "Edges look crunchy against the sky, can we soften the matte?",
    "Love the silhouette. Push the rim light a touch warmer.",
    "Feet are sliding around 1040, please lock them down.",
    "The sim loses volume after the splash, let's keep more of it.",
    "Client wants the fog denser in the background.",
    "Please match the eyeline to the previous shot.",
    "Good to go from my side, final for this one.",
    "Grain doesn't match the plate, check the scale.",
    "Hold the last pose 6 frames longer for the cut.",
]
NOTE_STATUS_OPEN, NOTE_STATUS_CLOSED = "opn", "clsd"

TYPE_LABEL = {"PublishedFile": "Published File", "HumanUser": "Person", "ApiUser": "Script"}
FIELD_LABEL = {
    "sg_status_list": "Status", "description": "Description", "content": "Task Name",
    "entity": "Link", "project": "Project", "sg_task": "Task", "task": "Task",
    "step": "Pipeline Step", "color": "Gantt Bar Color", "task_assignees": "Assigned To",
    "due_date": "Due Date", "start_date": "Start Date", "sg_cut_in": "Cut In",
    "sg_cut_out": "Cut Out", "sg_cut_duration": "Cut Duration", "sg_first_frame": "First Frame",
    "sg_last_frame": "Last Frame", "frame_count": "Frame Count",
    "sg_path_to_movie": "Path to Movie", "image": "Thumbnail", "versions": "Versions",
    "note_links": "Links", "tasks": "Tasks", "addressings_to": "To", "subject": "Subject",
    "sg_sequence": "Sequence", "sg_asset_type": "Type", "task_template": "Task Template",
    "template_task": "Template Task", "version": "Version", "version_number": "Version Number",
    "published_file_type": "Published File Type", "path_cache": "Path Cache", "name": "Name",
    "sg_versions": "Versions", "shots": "Shots", "notes": "Notes", "playlists": "Playlists",
    "published_files": "Published Files", "retirement_date": "Date Retired", "locked": "Locked",
    "sg_date_and_time": "Date and Time", "assets": "Assets",
}
CODE_LABEL = {"Shot": "Shot Code", "Asset": "Asset Name", "Version": "Version Name",
              "Playlist": "Playlist Name", "PublishedFile": "Published File Name",
              "Sequence": "Sequence Code"}
USER_LABEL = {"Version": "Artist", "Note": "Author"}
FIELD_TYPE = {
    "sg_status_list": "status_list", "description": "text", "content": "text", "code": "text",
    "subject": "text", "name": "text", "path_cache": "text", "sg_path_to_movie": "text",
    "entity": "entity", "project": "entity", "sg_task": "entity", "task": "entity",
    "user": "entity", "step": "entity", "sg_sequence": "entity", "task_template": "entity",
    "template_task": "entity", "version": "entity", "published_file_type": "entity",
    "color": "color", "task_assignees": "multi_entity", "versions": "multi_entity",
    "note_links": "multi_entity", "tasks": "multi_entity", "addressings_to": "multi_entity",
    "due_date": "date", "start_date": "date", "sg_cut_in": "number", "sg_cut_out": "number",
    "sg_cut_duration": "number", "sg_first_frame": "number", "sg_last_frame": "number",
    "frame_count": "number", "version_number": "number", "image": "image",
    "sg_asset_type": "list", "locked": "checkbox", "sg_date_and_time": "date_time",
}
# Types whose records carry an sg_status_list (enriched links then carry "status").
HAS_STATUS = {"Task", "Shot", "Asset", "Sequence", "Version", "Note", "HumanUser"}


def clock_str(t):
    """Seconds since midnight of DAY -> the wire form of a date-time."""
    return (DAY + datetime.timedelta(seconds=int(t))).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_str(t):
    """Seconds since midnight of DAY -> the "YYYY-MM-DD HH:MM:SS UTC" form found inside meta."""
    return (DAY + datetime.timedelta(seconds=int(t))).strftime("%Y-%m-%d %H:%M:%S UTC")


def day_str(days):
    return (DAY + datetime.timedelta(days=days)).strftime("%Y-%m-%d")


def hms(h, m=0, s=0):
    return h * 3600 + m * 60 + s


class Ent:
    """A record of the fake site."""

    def __init__(self, etype, eid, name, project=None, status=None, uid=None, **fields):
        self.type = etype
        self.id = eid
        self.name = name
        self.project = project
        self.status = status
        self.uuid = uid
        self.retired = False
        self.__dict__.update(fields)

    def link(self):
        return {"type": self.type, "id": self.id, "name": self.name}

    def rich(self):
        """The enriched link found in meta old/new values and added/removed lists."""
        d = {"name": self.name, "type": self.type, "id": self.id, "valid": "valid"}
        if self.type in HAS_STATUS:
            d["status"] = self.status
        d["uuid"] = self.uuid
        return d

    def label(self):
        return "%s %s" % (TYPE_LABEL.get(self.type, self.type), self.name)


class User(Ent):
    pass


def fmt(v):
    if v is None:
        return ""
    if isinstance(v, bool):
        return "Yes" if v else "No"
    if isinstance(v, dict):
        return v.get("name") or ""
    if isinstance(v, list):
        return ", ".join(fmt(x) for x in v)
    if isinstance(v, Ent):
        return v.name
    return str(v)


def field_label(ent_type, attr):
    if attr == "code":
        return CODE_LABEL.get(ent_type, "Name")
    if attr == "user":
        return USER_LABEL.get(ent_type, "User")
    return FIELD_LABEL.get(attr, attr)


class Site:
    """The fake site: its records, the clock, the event log being written."""

    def __init__(self, seed, count):
        self.rng = random.Random(seed)
        self.count = count
        # a longer log needs a bigger show, or every task would be final by the afternoon
        self.scale = max(1.0, count / EVENT_COUNT)
        self.rows = []
        self.next_event_id = FIRST_EVENT_ID
        self.t = hms(7, 52, 10)
        self.heap = []  # (time, seq, fn)
        self.heap_seq = 0
        self.next_ids = {}
        self.ents = {}  # type -> list of Ent
        self.task_status_rows = 0
        self.final_phase = False  # near the end only single-row activities run
        self.build()

    # -- ids, uuids, time -------------------------------------------------------------------

    def new_id(self, etype):
        self.next_ids[etype] += 1
        return self.next_ids[etype]

    def uuid_at(self, t, node=0x0242AC110006):
        """A version-1 uuid for time t (seconds since midnight of DAY, may be negative)."""
        epoch = (DAY - datetime.datetime(1582, 10, 15, tzinfo=datetime.timezone.utc)).total_seconds()
        ts = int((epoch + t) * 10_000_000) + self.rng.randrange(10_000_000)
        clock_seq = self.rng.getrandbits(14)
        return str(uuid.UUID(fields=(
            ts & 0xFFFFFFFF, (ts >> 32) & 0xFFFF, ((ts >> 48) & 0x0FFF) | 0x1000,
            (clock_seq >> 8) | 0x80, clock_seq & 0xFF, node)))

    def later(self, delay, fn):
        heapq.heappush(self.heap, (self.t + delay, self.heap_seq, fn))
        self.heap_seq += 1

    def at(self, when, fn):
        heapq.heappush(self.heap, (when, self.heap_seq, fn))
        self.heap_seq += 1

    def add(self, ent):
        self.ents.setdefault(ent.type, []).append(ent)
        return ent

    def live(self, etype):
        return [e for e in self.ents.get(etype, []) if not e.retired]

    def present(self, user):
        return user.type == "ApiUser" or user.arrive <= self.t < user.leave

    # -- the world before the day starts ----------------------------------------------------

    def build(self):
        rng = self.rng
        self.next_ids = {"Sequence": 100, "Shot": 1180, "Asset": 1400, "Task": 67000,
                         "Version": 8000, "PublishedFile": 30200, "Note": 9100, "Playlist": 310}
        past = -86400 * 120  # records made earlier in the production get older uuids
        self.projects = {}
        for pid, name, tank, prefix in PROJECTS:
            p = self.add(Ent("Project", pid, name, uid=self.uuid_at(past - 86400 * 200),
                             tank=tank, prefix=prefix))
            self.projects[pid] = p
        self.humans = []
        for uid, name, login, role, depts, logs_in in HUMANS:
            u = User("HumanUser", uid, name, status="act", uid=self.uuid_at(past - 86400 * 300),
                     login=login, role=role, depts=depts, logs_in=logs_in, session=None)
            if role == "coordinator":
                u.arrive = hms(8, 21) + rng.randrange(600)
            elif role == "supervisor":
                u.arrive = hms(9, 2) + rng.randrange(900)
            else:
                u.arrive = hms(8, 30) + rng.randrange(4200)
            u.leave = hms(17, 10) + rng.randrange(8000)
            # a session left open from an earlier day, replaced when the user logs in
            u.session = self.uuid_at(-86400 * rng.randint(1, 5) + rng.randrange(hms(8), hms(19)),
                                     node=0x0242AC110007)
            self.humans.append(self.add(u))
        self.by_name = {u.name: u for u in self.humans}
        self.bots = {}
        for uid, name in API_USERS:
            self.bots[name] = self.add(User("ApiUser", uid, name, uid=self.uuid_at(past)))
        self.steps = {k: Ent("Step", sid, sname, uid=self.uuid_at(past - 86400 * 400), code=code)
                      for k, (sid, sname, code) in STEPS.items()}
        self.pf_types = {k: Ent("PublishedFileType", i, n, uid=self.uuid_at(past - 86400 * 400),
                                ext=ext, folder=folder)
                         for k, (i, n, ext, folder) in PUBLISHED_FILE_TYPES.items()}
        self.templates = {}
        self.template_tasks = {}
        tid = TEMPLATE_TASK_FIRST_ID
        for key, (ttid, tname, names) in TASK_TEMPLATES.items():
            self.templates[key] = Ent("TaskTemplate", ttid, tname, uid=self.uuid_at(past), names=names)
            for n in names:
                self.template_tasks[(key, n)] = Ent("Task", tid, n, status="wtg",
                                                    uid=self.uuid_at(past - 86400 * 100))
                tid += 1

        self.sequences = {}
        for pid, seqs in SEQUENCES.items():
            p = self.projects[pid]
            for si, (code, n_shots) in enumerate(seqs):
                seq = self.add(Ent("Sequence", self.new_id("Sequence"), code, p, "ip",
                                   self.uuid_at(past), shots=[]))
                self.sequences[(pid, code)] = seq
                # earlier sequences are further along
                maturity = 0.8 - 0.75 * si / max(1, len(seqs) - 1)
                num = 0
                for _ in range(int(round(n_shots * self.scale))):
                    num += 10 if rng.random() > 0.08 else 5
                    self.make_shot(seq, "%s_%04d" % (code, num), maturity, past)
            for aname, atype in ASSETS[pid]:
                self.make_asset(p, aname, atype, rng.random(), past)

        # review history: a few open notes and the previous dailies playlists
        for _ in range(24):
            v = rng.choice([v for v in self.ents["Version"] if v.status in ("rev", "vwd")])
            author = self.by_name[rng.choice(["Jonas Weber", "Jonas Weber", "Ana Reyes"])]
            self.add(Ent("Note", self.new_id("Note"), "%s's Note on %s" % (author.name, v.name),
                         v.project, NOTE_STATUS_OPEN, self.uuid_at(past / 20), version=v,
                         author=author, addressed=v.artist))
        self.playlists = {}
        for pid, code, locked, n in [(66, "FS Dailies 2026-10-30", True, 9),
                                     (70, "HL Client Review 2026-10-29", True, 6),
                                     (66, "FS Dailies 2026-10-30 test", False, 0)]:
            p = self.projects[pid]
            vs = [v for v in self.ents["Version"] if v.project is p]
            self.add(Ent("Playlist", self.new_id("Playlist"), code, p, None, self.uuid_at(-86400 * 3),
                         versions=rng.sample(vs, n), locked=locked))

    def shot_template(self, with_fx):
        return "shot_fx" if with_fx else "shot"

    def make_shot(self, seq, code, maturity, past):
        rng = self.rng
        p = seq.project
        cut_in = 1001
        dur = rng.randrange(36, 190)
        shot = self.add(Ent("Shot", self.new_id("Shot"), code, p, "ip", self.uuid_at(past),
                            seq=seq, cut_in=cut_in, cut_out=cut_in + dur - 1, tasks=[],
                            description=rng.choice(SHOT_BEATS[p.id])))
        seq.shots.append(shot)
        names = TASK_TEMPLATES[self.shot_template(rng.random() < 0.4)][2]
        stage = min(len(names), max(0, int(rng.gauss(maturity * len(names), 1.0))))
        for i, n in enumerate(names):
            if i < stage:
                status = "fin" if rng.random() < 0.9 else "rev"
            elif i == stage:
                status = rng.choices(["rdy", "ip", "rev"], [3, 5, 2])[0]
            else:
                status = "wtg"
            self.make_task(shot, n, status, past)
        if all(t.status == "wtg" for t in shot.tasks):
            shot.status = "wtg"
        elif all(t.status == "fin" for t in shot.tasks):
            shot.status = "fin"

    def make_asset(self, p, code, atype, maturity, past):
        rng = self.rng
        names = TASK_TEMPLATES["prop" if atype == "Prop" else "character"][2]
        asset = self.add(Ent("Asset", self.new_id("Asset"), code, p, "ip", self.uuid_at(past),
                             asset_type=atype, tasks=[], cut_in=1001, cut_out=1048,
                             description="%s %s" % (atype.lower(), code)))
        stage = min(len(names), int(maturity * (len(names) + 1)))
        for i, n in enumerate(names):
            status = "fin" if i < stage else ("wtg" if i > stage else rng.choice(["rdy", "ip", "rev"]))
            self.make_task(asset, n, status, past)

    def artists_for(self, task_name):
        return [u for u in self.humans if task_name in u.depts]

    def make_task(self, parent, name, status, past):
        rng = self.rng
        assignees = []
        if status != "wtg" or rng.random() < 0.4:
            assignees = [rng.choice(self.artists_for(name))]
        due = None if status == "wtg" and rng.random() < 0.5 else day_str(rng.randint(-3, 18))
        task = self.add(Ent("Task", self.new_id("Task"), name, parent.project, status,
                            self.uuid_at(past), parent=parent, assignees=assignees, due=due,
                            versions=[], vnum=0, last_change=-86400.0))
        parent.tasks.append(task)
        if status in ("ip", "rev", "fin"):
            task.vnum = rng.randint(1 if status != "ip" else 0, 6)
            for n in range(max(1, task.vnum - 1), task.vnum + 1):
                if n == 0:
                    continue
                latest = n == task.vnum
                vstatus = {"rev": "rev", "fin": "apr"}.get(status, "vwd") if latest else "vwd"
                self.add_version(task, n, vstatus, self.uuid_at(past / 10))
        return task

    def version_code(self, task, n):
        return "%s_%s_v%03d" % (task.parent.name, self.steps[task.name].code, n)

    def add_version(self, task, n, status, uid):
        artist = task.assignees[0] if task.assignees else self.rng.choice(self.artists_for(task.name))
        v = self.add(Ent("Version", self.new_id("Version"), self.version_code(task, n), task.project,
                         status, uid, task=task, artist=artist, number=n, notes=[],
                         description=self.rng.choice(VERSION_COMMENTS)))
        task.versions.append(v)
        return v

    # -- writing the log --------------------------------------------------------------------

    def emit(self, user, event_type, attr, meta, entity, project, description, session=None):
        if user.type == "HumanUser" and session is None:
            session = user.session
        row = {
            "type": "EventLogEntry",
            "id": self.next_event_id,
            "event_type": event_type,
            "attribute_name": attr,
            "meta": meta,
            "entity": entity.link() if entity is not None else None,
            "user": user.link(),
            "project": project.link() if project is not None else None,
            "session_uuid": session if user.type == "HumanUser" else None,
            "created_at": clock_str(self.t),
            "description": description,
        }
        self.rows.append(row)
        self.next_event_id += 1
        if (event_type == "Shotgun_Task_Change" and attr == "sg_status_list"
                and not meta.get("in_create")):
            self.task_status_rows += 1
        return row["id"]

    def change(self, user, ent, attr, old, new, in_create=False, extra=None):
        """A scalar or entity-valued attribute change; returns the row id."""
        meta = {"type": "attribute_change", "attribute_name": attr, "entity_type": ent.type,
                "entity_id": ent.id, "field_data_type": FIELD_TYPE[attr],
                "old_value": old, "new_value": new}
        if extra:
            meta.update(extra)
        if in_create:
            meta["in_create"] = True
        meta["platform_id"] = None
        label = field_label(ent.type, attr)
        if in_create:
            desc = '%s set "%s" to "%s" on %s' % (user.name, label, fmt(new), ent.label())
        else:
            desc = '%s changed "%s" from "%s" to "%s" on %s' % (
                user.name, label, fmt(old), fmt(new), ent.label())
        return self.emit(user, "Shotgun_%s_Change" % ent.type, attr, meta, ent, ent.project, desc)

    def multi_desc(self, user, ent, label, added, removed):
        a, r = fmt(added), fmt(removed)
        if added and removed:
            what = 'added "%s" to and removed "%s" from' % (a, r)
        elif added:
            what = 'added "%s" to' % a
        else:
            what = 'removed "%s" from' % r
        return '%s %s "%s" on %s' % (user.name, what, label, ent.label())

    def multi_change(self, user, ent, attr, added, removed, in_create=False):
        meta = {"type": "attribute_change", "attribute_name": attr, "entity_type": ent.type,
                "entity_id": ent.id, "field_data_type": "multi_entity",
                "added": [x.rich() for x in added], "removed": [x.rich() for x in removed]}
        if in_create:
            meta["in_create"] = True
        meta["platform_id"] = None
        desc = self.multi_desc(user, ent, field_label(ent.type, attr), added, removed)
        return self.emit(user, "Shotgun_%s_Change" % ent.type, attr, meta, ent, ent.project, desc)

    def backref(self, user, target, attr, source, source_field, original_id, fdt, added=True,
                in_create=False):
        """The row written on the other side of a link (3.3.5)."""
        meta = {"type": "attribute_change", "attribute_name": attr, "entity_type": source.type,
                "entity_id": source.id, "field_data_type": fdt,
                "actual_attribute_changed": "%s.%s" % (source.type, source_field)}
        if in_create:
            meta["in_create"] = True
        meta["original_event_log_entry_id"] = original_id
        meta["added"] = [source.rich()] if added else []
        meta["removed"] = [] if added else [source.rich()]
        meta["platform_id"] = None
        desc = self.multi_desc(user, target, field_label(target.type, attr),
                               [source] if added else [], [] if added else [source])
        return self.emit(user, "Shotgun_%s_Change" % target.type, attr, meta, target,
                         target.project, desc)

    def create(self, user, ent, fields):
        """New row, then one in_create change row per field, back-references right after.

        fields: list of (attr, value, backrefs) where value is a scalar, an Ent (entity field) or a
        list of Ent (multi-entity field), and backrefs a list of (target Ent, target attr).
        """
        self.add(ent)
        meta = {"type": "new_entity", "entity_type": ent.type, "entity_id": ent.id}
        self.emit(user, "Shotgun_%s_New" % ent.type, None, meta, ent, ent.project,
                  "%s created new %s" % (user.name, ent.label()))
        for attr, value, backrefs in sorted(fields, key=lambda f: f[0]):
            if value is None or value == []:
                continue  # only fields that got a value are logged
            fdt = FIELD_TYPE[attr]
            if fdt == "multi_entity":
                rid = self.multi_change(user, ent, attr, value, [], in_create=True)
            elif fdt == "entity":
                rid = self.change(user, ent, attr, None, value.rich(), in_create=True)
            else:
                rid = self.change(user, ent, attr, None, value, in_create=True)
            for target, tattr in backrefs or []:
                self.backref(user, target, tattr, ent, attr, rid, fdt, in_create=True)
        return ent

    def retire(self, user, ent):
        ent.retired = True
        when = utc_str(self.t)
        meta = {"type": "attribute_change", "attribute_name": "retirement_date",
                "entity_type": ent.type, "entity_id": ent.id, "old_value": None, "new_value": when}
        self.emit(user, "Shotgun_%s_Change" % ent.type, "retirement_date", meta, None, ent.project,
                  '%s set "Date Retired" to "%s" on %s' % (user.name, when, ent.label()))
        meta = {"type": "entity_retirement", "entity_type": ent.type, "entity_id": ent.id,
                "class_name": ent.type, "id": ent.id, "display_name": ent.name,
                "retirement_date": when}
        self.emit(user, "Shotgun_%s_Retirement" % ent.type, None, meta, None, ent.project,
                  "%s retired %s" % (user.name, ent.label()))

    def revive(self, user, ent):
        ent.retired = False
        meta = {"type": "entity_revival", "class_name": ent.type, "display_name": ent.name,
                "entity_id": ent.id, "entity_type": ent.type, "id": ent.id}
        self.emit(user, "Shotgun_%s_Revival" % ent.type, None, meta, ent, ent.project,
                  "%s revived %s" % (user.name, ent.label()))

    def thumbnail(self, user, ent, ready_after):
        """image change with is_transient true now, the same row with false once it is ready."""
        def row(transient):
            if ent.retired:
                return
            meta = {"type": "attribute_change", "attribute_name": "image", "entity_type": ent.type,
                    "entity_id": ent.id, "field_data_type": "image", "old_value": None,
                    "new_value": None, "is_transient": transient, "platform_id": None}
            self.emit(user, "Shotgun_%s_Change" % ent.type, "image", meta, ent, ent.project,
                      '%s changed "Thumbnail" on %s' % (user.name, ent.label()))
        row(True)
        self.later(ready_after, lambda: row(False))

    def login(self, user):
        user.session = self.uuid_at(self.t, node=0x0242AC110007)
        meta = {"type": "login", "ip_address": "10.20.%d.%d" % (4 + user.id % 3, 30 + user.id)}
        self.emit(user, "Shotgun_User_Login", None, meta, user, None,
                  "%s logged in" % user.name, session=user.session)

    # -- activities -------------------------------------------------------------------------

    def someone(self, *names):
        people = [self.by_name[n] for n in names if self.present(self.by_name[n])]
        return self.rng.choice(people) if people else None

    def reviewers(self, task):
        """Who may approve or bounce a task: the supervisor, or the department lead."""
        people = [self.by_name["Jonas Weber"], self.by_name[LEADS[task.name]]]
        return [u for u in people if self.present(u) and u not in task.assignees]

    def reviewer_for(self, task):
        people = self.reviewers(task)
        if len(people) == 2:
            return people[0] if self.rng.random() < 0.45 else people[1]
        return people[0] if people else None

    def set_task_status(self, user, task, new):
        old = task.status
        task.status = new
        task.last_change = self.t
        self.change(user, task, "sg_status_list", old, new)

    def act_task_status(self):
        rng = self.rng
        moves = [("wtg", "rdy", 16), ("rdy", "ip", 22), ("ip", "rev", 22), ("rev", "fin", 22),
                 ("rev", "ip", 10), ("fin", "ip", 2)]
        by_status = {}
        for t in self.live("Task"):
            if not t.parent.retired and self.t - t.last_change > 1500:
                by_status.setdefault(t.status, []).append(t)
        options = []
        for old, new, w in moves:
            picks = []
            for task in by_status.get(old, []):
                if old == "wtg":
                    ok = self.present(self.by_name["Isabel Costa"]) or \
                        self.present(self.by_name["Jonas Weber"])
                elif old in ("rdy", "ip"):
                    ok = bool(task.assignees) and self.present(task.assignees[0])
                else:
                    ok = bool(self.reviewers(task))
                if ok:
                    picks.append(task)
            if picks:
                options.append((old, new, w * min(1.0, len(picks) / 8.0), picks))
        if not options:
            return False
        old, new, _, picks = rng.choices(options, [o[2] for o in options])[0]
        task = rng.choice(picks)
        if old == "wtg":
            user = self.someone("Isabel Costa") or self.someone("Jonas Weber")
        elif old in ("rdy", "ip"):
            user = task.assignees[0]
        else:
            user = self.reviewer_for(task)
        self.set_task_status(user, task, new)
        if old == "wtg" and not task.assignees and not self.final_phase:
            artist = rng.choice(self.artists_for(task.name))
            task.assignees = [artist]
            self.multi_change(user, task, "task_assignees", [artist], [])
        latest = self.latest_version(task)
        if self.final_phase:
            return True
        if old == "rev" and new == "fin" and latest is not None and latest.status != "apr" \
                and rng.random() < 0.5:
            self.change(user, latest, "sg_status_list", latest.status, "apr")
            latest.status = "apr"
        if new == "ip" and old in ("rev", "fin") and latest is not None and rng.random() < 0.3:
            self.t += rng.randrange(20, 90)
            self.note(user, latest, rng.choice(NOTE_TEXTS[:9]))
        return True

    def latest_version(self, task):
        live = [v for v in task.versions if not v.retired]
        return live[-1] if live else None
        return False

    def act_publish(self, task=None):
        rng = self.rng
        bot = self.bots["publish_bot"]
        if task is None:
            farm = rng.random() < 0.25  # renders finishing on the farm publish unattended
            cands = [t for t in self.live("Task") if t.status == "ip" and t.assignees
                     and not t.parent.retired and (farm or self.present(t.assignees[0]))]
            if not cands:
                return False
            task = rng.choice(cands)
        artist = task.assignees[0]
        task.vnum += 1
        n = task.vnum
        parent = task.parent
        p = task.project
        code = self.version_code(task, n)
        v = Ent("Version", self.new_id("Version"), code, p, "rev", self.uuid_at(self.t),
                task=task, artist=artist, number=n, notes=[], today=True,
                description=rng.choice(VERSION_COMMENTS))
        task.versions.append(v)
        root = "/mnt/projects/%s/%s" % (p.tank, self.entity_path(parent))
        movie = "%s/%s/review/%s.mov" % (root, self.steps[task.name].code, code)
        fields = [
            ("code", code, None), ("description", v.description, None), ("entity", parent, None),
            ("project", p, None), ("sg_first_frame", parent.cut_in, None),
            ("sg_last_frame", parent.cut_out, None),
            ("frame_count", parent.cut_out - parent.cut_in + 1, None),
            ("sg_path_to_movie", movie, None), ("sg_status_list", "rev", None),
            ("sg_task", task, [(task, "sg_versions")]), ("user", artist, None),
        ]
        self.create(bot, v, fields)
        if rng.random() < 0.85:
            self.thumbnail(bot, v, rng.randrange(4, 40))
        if rng.random() < 0.55:
            self.t += rng.randrange(1, 4)
            kind = self.pf_types[rng.choice(STEP_PUBLISH[task.name])]
            base = "%s_%s" % (parent.name, self.steps[task.name].code)
            pf_code = "%s.v%03d.%s" % (base, n, kind.ext)
            pf = Ent("PublishedFile", self.new_id("PublishedFile"), pf_code, p, None,
                     self.uuid_at(self.t), version=v, task=task)
            path = "%s/%s/publish/%s/%s" % (p.tank, self.entity_path(parent),
                                            kind.folder, pf_code)
            self.create(bot, pf, [
                ("code", pf_code, None), ("entity", parent, None), ("name", base, None),
                ("path_cache", path, None), ("project", p, None),
                ("published_file_type", kind, None), ("task", task, None),
                ("version", v, [(v, "published_files")]), ("version_number", n, None),
            ])
        if rng.random() < 0.35 and self.t - task.last_change > 900:
            self.t += rng.randrange(1, 3)
            self.set_task_status(bot, task, "rev")
        return True

    def act_bot_review(self):
        """After hours: publish_bot submits a task whose render finished on the farm."""
        tasks = [t for t in self.live("Task") if t.status == "ip" and self.t - t.last_change > 900]
        if tasks:
            self.set_task_status(self.bots["publish_bot"], self.rng.choice(tasks), "rev")

    def entity_path(self, parent):
        if parent.type == "Shot":
            return "sequences/%s/%s" % (parent.seq.name, parent.name)
        return "assets/%s/%s" % (parent.asset_type.lower(), parent.name)

    def note(self, author, v, text):
        task = v.task
        links = [v, task.parent]
        note = Ent("Note", self.new_id("Note"), "%s's Note on %s" % (author.name, v.name), v.project,
                   NOTE_STATUS_OPEN, self.uuid_at(self.t), version=v, author=author,
                   addressed=v.artist)
        self.create(author, note, [
            ("addressings_to", [v.artist], None), ("content", text, None),
            ("note_links", links, [(x, "notes") for x in links]), ("project", v.project, None),
            ("sg_status_list", NOTE_STATUS_OPEN, None), ("subject", note.name, None),
            ("tasks", [task], [(task, "notes")]), ("user", author, None),
        ])
        v.notes.append(note)
        return note

    def act_note(self):
        rng = self.rng
        author = self.someone("Jonas Weber", "Jonas Weber", "Ana Reyes", "Isabel Costa")
        if author is None:
            return False
        vs = [v for v in self.live("Version") if v.status in ("rev", "vwd") and not v.task.retired
              and (author.name != "Ana Reyes" or v.task.name == "Anim")]
        if not vs:
            return False
        self.note(author, rng.choice(vs[-40:]), rng.choice(NOTE_TEXTS))
        return True

    def act_note_close(self):
        notes = [n for n in self.live("Note") if n.status == NOTE_STATUS_OPEN
                 and self.present(n.addressed)]
        if not notes:
            return False
        n = self.rng.choice(notes)
        self.change(n.addressed, n, "sg_status_list", n.status, NOTE_STATUS_CLOSED)
        n.status = NOTE_STATUS_CLOSED
        return True

    def act_version_status(self):
        user = self.someone("Jonas Weber", "Jonas Weber", "Ana Reyes")
        if user is None:
            return False
        vs = [v for v in self.live("Version") if v.status in ("rev", "vwd")
              and (user.name != "Ana Reyes" or v.task.name == "Anim")]
        if not vs:
            return False
        v = self.rng.choice(vs[-60:])
        new = "vwd" if v.status == "rev" else "apr"
        self.change(user, v, "sg_status_list", v.status, new)
        v.status = new
        return True

    def act_assign(self):
        rng = self.rng
        user = self.someone("Isabel Costa")
        if user is None:
            return False
        tasks = [t for t in self.live("Task") if t.status in ("wtg", "rdy")]
        if not tasks:
            return False
        task = rng.choice(tasks)
        artists = [a for a in self.artists_for(task.name) if a not in task.assignees]
        if task.assignees and (not artists or rng.random() < 0.5):
            # a reassignment; a task that is ready keeps someone on it
            removed = [task.assignees[-1]]
            keep = task.status == "rdy" and len(task.assignees) == 1
            added = [rng.choice(artists)] if artists and (keep or rng.random() < 0.5) else []
            if keep and not added:
                return False
        elif artists:
            added, removed = [rng.choice(artists)], []
        else:
            return False
        task.assignees = [a for a in task.assignees if a not in removed] + added
        self.multi_change(user, task, "task_assignees", added, removed)
        return True

    def act_dates(self):
        rng = self.rng
        user = self.someone("Isabel Costa", "Isabel Costa", "Jonas Weber")
        if user is None:
            return False
        tasks = [t for t in self.live("Task") if t.status != "fin"]
        if not tasks:
            return False
        task = rng.choice(tasks)
        if task.due is None or rng.random() < 0.8:
            old = task.due
            base = 2 if old is None else (datetime.date.fromisoformat(old) - DAY.date()).days
            task.due = day_str(max(1, base + rng.choice([-2, -1, 1, 2, 3, 5, 7])))
            self.change(user, task, "due_date", old, task.due)
        else:
            self.change(user, task, "start_date", None, day_str(rng.randint(0, 3)))
        return True

    def act_editorial(self):
        """ingest_bot applies a re-cut from editorial: cut in/out and duration of one shot."""
        rng = self.rng
        bot = self.bots["ingest_bot"]
        shots = [s for s in self.live("Shot") if s.status != "fin"]
        if not shots:
            return False
        shot = rng.choice(shots)
        old_in, old_out = shot.cut_in, shot.cut_out
        if rng.random() < 0.35:
            shot.cut_in = old_in + rng.choice([-8, -4, 4, 6])
            self.change(bot, shot, "sg_cut_in", old_in, shot.cut_in)
        shot.cut_out = old_out + rng.choice([-12, -6, -3, 3, 8, 16, 24])
        self.change(bot, shot, "sg_cut_out", old_out, shot.cut_out)
        self.change(bot, shot, "sg_cut_duration", old_out - old_in + 1,
                    shot.cut_out - shot.cut_in + 1)
        return True

    def act_cut_tweak(self):
        user = self.someone("Ben Okafor", "Isabel Costa")
        if user is None:
            return False
        shots = [s for s in self.live("Shot") if s.status != "fin"]
        if not shots:
            return False
        shot = self.rng.choice(shots)
        old = shot.cut_out
        shot.cut_out += self.rng.choice([-2, -1, 1, 2, 4])
        self.change(user, shot, "sg_cut_out", old, shot.cut_out)
        return True

    def act_description(self):
        rng = self.rng
        user = self.someone("Isabel Costa", "Jonas Weber", "Ana Reyes", "Ben Okafor")
        if user is None:
            return False
        kind = rng.choice(["Shot", "Shot", "Version", "Asset"])
        ent = rng.choice(self.live(kind)[-80:])
        old = ent.description
        if kind == "Version":
            new = "%s; %s" % (old, rng.choice(VERSION_COMMENTS))
        elif kind == "Asset":
            new = "%s, hero asset, see ref board" % old.split(",")[0]
        else:
            new = rng.choice(SHOT_BEATS[ent.project.id])
        if new == old:
            return False
        ent.description = new
        self.change(user, ent, "description", old, new)
        return True

    def act_manual_thumbnail(self):
        user = self.someone("Isabel Costa", "Chloé Martin", "Emma Lindqvist", "Ana Reyes")
        if user is None:
            return False
        v = self.rng.choice(self.live("Version")[-50:])
        self.thumbnail(user, v, self.rng.randrange(3, 15))
        return True

    def act_shot_status(self):
        user = self.someone("Isabel Costa")
        if user is None:
            return False
        shots = self.live("Shot")
        for shot in self.rng.sample(shots, min(30, len(shots))):
            states = [t.status for t in shot.tasks if not t.retired]
            if shot.status == "wtg" and any(s != "wtg" for s in states):
                new = "ip"
            elif shot.status == "ip" and states and all(s == "fin" for s in states):
                new = "fin"
            elif shot.status == "fin" and any(s != "fin" for s in states):
                new = "ip"
            else:
                continue
            self.change(user, shot, "sg_status_list", shot.status, new)
            shot.status = new
            return True
        return False

    def act_playlist_add(self):
        rng = self.rng
        user = self.someone("Isabel Costa")
        open_pl = [pl for pl in self.live("Playlist") if not pl.locked and pl.versions is not None
                   and getattr(pl, "today", False)]
        if user is None or not open_pl:
            return False
        pl = rng.choice(open_pl)
        vs = [v for v in self.live("Version") if v.project is pl.project and v.status == "rev"
              and v not in pl.versions][-12:]
        if not vs:
            return False
        if pl.versions and rng.random() < 0.12:
            gone = rng.choice(pl.versions)
            pl.versions.remove(gone)
            rid = self.multi_change(user, pl, "versions", [], [gone])
            self.backref(user, gone, "playlists", pl, "versions", rid, "multi_entity", added=False)
            return True
        added = rng.sample(vs, min(len(vs), rng.choice([1, 1, 2, 3])))
        pl.versions.extend(added)
        rid = self.multi_change(user, pl, "versions", added, [])
        for v in added:
            self.backref(user, v, "playlists", pl, "versions", rid, "multi_entity")
        return True

    # -- scripted moments of the day ---------------------------------------------------------

    def sc_playlist(self, pid, code, review_at, lock_at):
        user = self.by_name["Isabel Costa"]
        p = self.projects[pid]
        vs = [v for v in self.live("Version") if v.project is p and v.status == "rev"][-3:]
        pl = Ent("Playlist", self.new_id("Playlist"), code, p, None, self.uuid_at(self.t),
                 versions=list(vs), locked=False, today=True)
        self.create(user, pl, [
            ("code", code, None), ("description", "Dailies review in the screening room", None),
            ("project", p, None), ("sg_date_and_time", utc_str(review_at), None),
            ("versions", vs, [(v, "playlists") for v in vs]),
        ])

        def lock():
            pl.locked = True
            self.change(self.by_name["Isabel Costa"], pl, "locked", False, True)
        self.at(lock_at, lock)

    def sc_turnover(self, pid, seq_code, n_shots):
        """ingest_bot creates new shots from an editorial turnover, each with its tasks and plate."""
        rng = self.rng
        bot = self.bots["ingest_bot"]
        seq = self.sequences[(pid, seq_code)]
        num = int(seq.shots[-1].name.split("_")[1])
        for _ in range(n_shots):
            num += 10
            code = "%s_%04d" % (seq_code, num)
            dur = rng.randrange(40, 160)
            with_fx = rng.random() < 0.5
            tmpl_key = self.shot_template(with_fx)
            tmpl = self.templates[tmpl_key]
            shot = Ent("Shot", self.new_id("Shot"), code, seq.project, "wtg", self.uuid_at(self.t),
                       seq=seq, cut_in=1001, cut_out=1000 + dur, tasks=[],
                       description=rng.choice(SHOT_BEATS[pid]))
            seq.shots.append(shot)
            self.create(bot, shot, [
                ("code", code, None), ("description", shot.description, None),
                ("project", seq.project, None), ("sg_cut_duration", dur, None),
                ("sg_cut_in", 1001, None), ("sg_cut_out", 1000 + dur, None),
                ("sg_sequence", seq, [(seq, "shots")]), ("sg_status_list", "wtg", None),
                ("task_template", tmpl, None),
            ])
            for name in tmpl.names:
                self.create_task(bot, shot, name, self.template_tasks[(tmpl_key, name)])
            self.t += rng.randrange(2, 6)
            kind = self.pf_types["plate"]
            pf_code = "%s_plate_bg01.v001.exr" % code
            pf = Ent("PublishedFile", self.new_id("PublishedFile"), pf_code, seq.project, None,
                     self.uuid_at(self.t))
            self.create(bot, pf, [
                ("code", pf_code, None), ("entity", shot, None), ("name", "%s_plate_bg01" % code, None),
                ("path_cache", "%s/%s/publish/plates/%s" % (seq.project.tank, self.entity_path(shot),
                                                            pf_code), None),
                ("project", seq.project, None), ("published_file_type", kind, None),
                ("version_number", 1, None),
            ])
            self.t += rng.randrange(5, 20)

    def create_task(self, user, parent, name, template_task=None, assignee=None):
        task = Ent("Task", self.new_id("Task"), name, parent.project, "wtg", self.uuid_at(self.t),
                   parent=parent, assignees=[assignee] if assignee else [], due=None, versions=[],
                   vnum=0, last_change=self.t)
        parent.tasks.append(task)
        fields = [("color", "pipeline_step", None), ("content", name, None),
                  ("entity", parent, [(parent, "tasks")]), ("project", parent.project, None),
                  ("sg_status_list", "wtg", None), ("step", self.steps[name], None)]
        if template_task is not None:
            fields.append(("template_task", template_task, None))
        if assignee is not None:
            fields.append(("task_assignees", [assignee], None))
        self.create(user, task, fields)
        return task

    def sc_new_asset(self, pid, code, atype, user_name):
        user = self.by_name[user_name]
        p = self.projects[pid]
        key = "prop" if atype == "Prop" else "character"
        tmpl = self.templates[key]
        asset = Ent("Asset", self.new_id("Asset"), code, p, "wtg", self.uuid_at(self.t),
                    asset_type=atype, tasks=[], cut_in=1001, cut_out=1048,
                    description="%s %s" % (atype.lower(), code))
        self.create(user, asset, [
            ("code", code, None), ("description", asset.description, None), ("project", p, None),
            ("sg_asset_type", atype, None), ("sg_status_list", "wtg", None),
            ("task_template", tmpl, None),
        ])
        for name in tmpl.names:
            self.create_task(user, asset, name, self.template_tasks[(key, name)])

    def sc_duplicate_task(self, then_retire_after):
        """Isabel adds an FX task to a shot that already has one, then deletes the duplicate."""
        user = self.by_name["Isabel Costa"]
        shots = [s for s in self.live("Shot") if any(t.name == "FX" for t in s.tasks)]
        shot = self.rng.choice(shots)
        task = self.create_task(user, shot, "FX", assignee=self.by_name["Dev Patel"])
        self.later(then_retire_after, lambda: self.retire(user, task))

    def sc_retire_and_revive(self, revive_after):
        """Isabel retires a waiting task by mistake and brings it back a few minutes later."""
        user = self.by_name["Isabel Costa"]
        tasks = [t for t in self.live("Task") if t.status == "wtg" and t.parent.type == "Shot"]
        if not tasks:
            return
        task = self.rng.choice(tasks)
        self.retire(user, task)
        self.later(revive_after, lambda: self.revive(user, task))

    def sc_bad_publish(self, revive_after=None):
        """An artist retires a Version publish_bot just made; optionally thinks better of it."""
        rng = self.rng
        vs = [v for v in self.live("Version") if getattr(v, "today", False)
              and self.present(v.artist) and not v.notes][-15:]
        if not vs:
            return
        v = rng.choice(vs)
        self.retire(v.artist, v)
        if revive_after:
            self.later(revive_after, lambda: self.revive(v.artist, v))

    def sc_retire_note(self):
        user = self.by_name["Jonas Weber"]
        notes = [n for n in self.live("Note") if n.author is user and n.status == NOTE_STATUS_OPEN]
        if notes:
            self.retire(user, notes[-1])

    def sc_retire_playlist(self, code):
        pl = [p for p in self.live("Playlist") if p.name == code][0]
        self.retire(self.by_name["Isabel Costa"], pl)

    def sc_retire_publish(self):
        pfs = self.live("PublishedFile")
        pf = pfs[-1]
        user = pf.task.assignees[0] if getattr(pf, "task", None) and pf.task.assignees else \
            self.by_name["Isabel Costa"]
        self.retire(user, pf)

    def sc_retire_omitted_task(self):
        user = self.by_name["Isabel Costa"]
        tasks = [t for t in self.live("Task") if t.status == "wtg" and t.name == "FX"]
        if tasks:
            self.retire(user, self.rng.choice(tasks))

    def schedule_day(self):
        for u in self.humans:
            if u.logs_in:
                self.at(u.arrive, lambda u=u: self.login(u))
        for name, when in [("Ben Okafor", hms(13, 22, 40)), ("Isabel Costa", hms(13, 41, 5)),
                           ("Dev Patel", hms(14, 3, 12))]:
            u = self.by_name[name]
            self.at(when, lambda u=u: self.login(u))
        self.at(hms(9, 18, 30), lambda: self.sc_playlist(66, "FS Dailies 2026-11-02 AM",
                                                         hms(10, 30), hms(11, 47, 3)))
        self.at(hms(9, 36, 2), lambda: self.sc_playlist(70, "HL Dailies 2026-11-02",
                                                        hms(11, 30), hms(16, 55, 40)))
        self.at(hms(14, 12, 44), lambda: self.sc_playlist(66, "FS Dailies 2026-11-02 PM",
                                                          hms(16, 0), hms(17, 26, 9)))
        self.at(hms(10, 47, 15), lambda: self.sc_turnover(66, "050", 3))
        self.at(hms(11, 4, 51), lambda: self.sc_duplicate_task(163))
        self.at(hms(12, 9, 27), lambda: self.sc_bad_publish())
        self.at(hms(13, 55, 8), lambda: self.sc_new_asset(70, "foghornBuoy", "Prop", "Isabel Costa"))
        self.at(hms(14, 37, 33), lambda: self.sc_retire_publish())
        self.at(hms(15, 19, 40), lambda: self.sc_retire_and_revive(247))
        self.at(hms(15, 58, 2), lambda: self.sc_new_asset(66, "mossSprite", "Character",
                                                          "Isabel Costa"))
        self.at(hms(16, 41, 19), lambda: self.sc_retire_note())
        self.at(hms(16, 48, 53), lambda: self.sc_bad_publish(revive_after=318))
        self.at(hms(17, 2, 36), lambda: self.sc_retire_playlist("FS Dailies 2026-10-30 test"))
        self.at(hms(17, 44, 10), lambda: self.sc_retire_omitted_task())

    # -- the day ----------------------------------------------------------------------------

    def activity_rate(self):
        """Relative activity at the current time of day."""
        h = self.t / 3600.0
        for end, rate in [(8.4, 0.12), (9.2, 0.55), (12.5, 1.0), (13.5, 0.4), (17.3, 1.0),
                          (18.3, 0.55), (19.3, 0.3), (24.0, 0.12)]:
            if h < end:
                return rate
        return 0.1

    ACTIVITIES = [
        ("publish", 5.5), ("note", 0.8), ("note_close", 2.5), ("version_status", 5.0),
        ("assign", 1.4), ("dates", 3.0), ("editorial", 1.3), ("cut_tweak", 1.4),
        ("description", 2.8), ("manual_thumbnail", 0.9), ("shot_status", 1.5),
        ("playlist_add", 3.2),
    ]
    SINGLE_ROW = ["version_status", "note_close", "dates", "cut_tweak", "description",
                  "shot_status", "assign"]

    def run(self):
        rng = self.rng
        self.schedule_day()
        per_hour = PEAK_ACTIVITIES_PER_HOUR * self.count / EVENT_COUNT
        names = [a[0] for a in self.ACTIVITIES]
        weights = [a[1] for a in self.ACTIVITIES]
        while len(self.rows) < self.count:
            t_next = self.t + rng.expovariate(per_hour * self.activity_rate() / 3600.0)
            while self.heap and self.heap[0][0] <= t_next and len(self.rows) < self.count - 4:
                when, _, fn = heapq.heappop(self.heap)
                self.t = max(self.t, when)
                self.gap()
                fn()
            self.t = max(self.t, t_next)
            left = self.count - len(self.rows)
            self.final_phase = left < 60
            share = self.task_status_rows / max(1, len(self.rows))
            p_status = min(0.9, max(0.2, 0.62 + (TASK_STATUS_SHARE - share) * 25))
            status_failed = False
            for _ in range(6):
                if not status_failed and rng.random() < p_status:
                    name = "task_status"
                else:
                    name = rng.choices(names, weights)[0]
                if self.final_phase and name not in self.SINGLE_ROW + ["task_status"]:
                    continue
                mark = len(self.rows)
                self.gap()
                if getattr(self, "act_" + name)() and len(self.rows) > mark:
                    break
                status_failed = status_failed or name == "task_status"
            else:
                if self.final_phase and not any(self.present(u) for u in self.humans):
                    self.act_bot_review()
        # keep exactly `count` rows; the last activities are single rows, so nothing is cut
        del self.rows[self.count:]

    def gap(self):
        """Now and then an id is skipped: a rolled-back transaction leaves a hole for ever."""
        if self.rng.random() < 0.006:
            self.next_event_id += self.rng.choice([1, 1, 1, 2, 3])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=EVENT_COUNT, help="events to write (default 3000)")
    ap.add_argument("--seed", type=int, default=SEED, help="random seed (default %d)" % SEED)
    args = ap.parse_args(argv)
    site = Site(args.seed, args.count)
    site.run()
    out = sys.stdout.buffer
    for row in site.rows:
        out.write(json.dumps(row, ensure_ascii=False, separators=(", ", ": ")).encode("utf-8"))
        out.write(b"\n")
    out.flush()


if __name__ == "__main__":
    main()
