"""The clinic: patients, doctors, open slots, appointments, prescriptions and invoices.

A front-desk agent books, moves and cancels appointments, requests prescription
refills, takes invoice payments and updates contact details, under a policy with
conditions (notice for cancellations, refills left, doctors closed to new patients, a
cap on booked appointments) that make some requests refusable.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from pivotgym.envs.tools.db import Database, Row, Table
from pivotgym.envs.tools.domain import (
    Call,
    Domain,
    Fact,
    Scenario,
    ToolTask,
    introduce,
    register_domain,
)
from pivotgym.envs.tools.toolkit import ToolError, Toolkit
from pivotgym.envs.tools.words import FIRST_NAMES, LAST_NAMES, dates_after, pick

TODAY = "2027-03-01"
MAX_SCHEDULED = 3
SPECIALTIES = ("general practice", "dermatology", "cardiology", "pediatrics", "orthopedics")
TIMES = ("08:30", "09:00", "09:30", "10:00", "10:30", "11:00", "14:00", "14:30", "15:00", "16:00")
MEDICATIONS = ("amoxicillin", "lisinopril", "metformin", "atorvastatin", "cetirizine",
               "omeprazole", "levothyroxine", "albuterol", "sertraline", "ibuprofen")  # fmt: skip


@dataclass(frozen=True)
class Patient:
    patient_id: str
    name: str
    date_of_birth: str
    phone: str
    email: str
    insurance_id: str | None = None


@dataclass(frozen=True)
class Doctor:
    doctor_id: str
    name: str
    specialty: str
    accepts_new_patients: bool
    visit_fee: float


@dataclass(frozen=True)
class Slot:
    slot_id: str
    doctor_id: str
    date: str
    time: str
    available: bool = True


@dataclass(frozen=True)
class Appointment:
    appointment_id: str
    patient_id: str
    doctor_id: str
    slot_id: str
    date: str
    time: str
    reason: str
    status: Literal["scheduled", "cancelled", "completed"] = "scheduled"


@dataclass(frozen=True)
class Prescription:
    prescription_id: str
    patient_id: str
    doctor_id: str
    medication: str
    refills_left: int
    status: Literal["active", "expired"] = "active"
    refill_requests: int = 0


@dataclass(frozen=True)
class Invoice:
    invoice_id: str
    patient_id: str
    appointment_id: str
    amount: float
    status: Literal["unpaid", "paid"] = "unpaid"
    paid_with: str | None = None


TABLES = (
    Table("patients", Patient, key="patient_id"),
    Table("doctors", Doctor, key="doctor_id"),
    Table("slots", Slot, key="slot_id"),
    Table("appointments", Appointment, key="appointment_id"),
    Table("prescriptions", Prescription, key="prescription_id"),
    Table("invoices", Invoice, key="invoice_id"),
)

POLICY = f"""# Clinic front desk policy

You are the front desk of Riverside Clinic. Today is {TODAY}. Help patients with
appointments, prescription refills, invoices and contact details, using the tools.

## Identifying the patient
- Before looking up or changing anything about a patient, identify them: either by
  their patient ID, or by their full name together with their date of birth.
- Never reveal or change anything of a patient you have not identified this way.

## Changes need consent
- Before any change (booking, moving or cancelling an appointment, a refill request,
  a payment, new contact details), state exactly what you will do and ask the patient
  to confirm. Act only after an explicit yes.

## Appointments
- An appointment can be cancelled or moved only if it is at least 2 days away (its date
  is on or after the day after tomorrow). Otherwise refuse, and explain that late
  changes must be made by phone with the doctor's office.
- A patient may have at most {MAX_SCHEDULED} scheduled appointments. Refuse a booking
  that would exceed this.
- A doctor who does not accept new patients may only be booked by patients who have
  had an appointment with that doctor before (any status).
- Only slots marked available can be booked.

## Prescriptions
- A refill can be requested only for an active prescription with refills left.
  Otherwise refuse, and tell the patient to book an appointment with their doctor.

## Invoices
- Invoices are paid in full, with the card on file or, for patients with an insurance
  ID, through insurance.

## Answering
- Give dates as YYYY-MM-DD and times as HH:MM. Do not make up information that the
  tools did not give you.
"""

tools = Toolkit()


def _patient(db: Database, patient_id: str) -> Patient:
    patient = db.get("patients", patient_id)
    if patient is None:
        raise ToolError(f"patient {patient_id} not found")
    return patient


def _appointment(db: Database, appointment_id: str) -> Appointment:
    appointment = db.get("appointments", appointment_id)
    if appointment is None:
        raise ToolError(f"appointment {appointment_id} not found")
    return appointment


@tools.read
def find_patient(db: Database, name: str, date_of_birth: str) -> Patient:
    """Find a patient by full name and date of birth.

    name: the patient's full name, as registered
    date_of_birth: YYYY-MM-DD
    """
    for patient in db.rows("patients"):
        if patient.name.lower() == name.strip().lower() and patient.date_of_birth == date_of_birth:
            return patient
    raise ToolError("no patient with that name and date of birth")


@tools.read
def get_patient(db: Database, patient_id: str) -> Patient:
    """Get a patient's record by patient ID.

    patient_id: for example P1001
    """
    return _patient(db, patient_id)


@tools.read
def list_appointments(db: Database, patient_id: str) -> list[Appointment]:
    """List every appointment of a patient, past and future, in date order.

    patient_id: the patient's ID
    """
    _patient(db, patient_id)
    return sorted(db.where("appointments", patient_id=patient_id), key=lambda a: (a.date, a.time))


@tools.read
def get_appointment(db: Database, appointment_id: str) -> Appointment:
    """Get one appointment by its ID.

    appointment_id: for example A20001
    """
    return _appointment(db, appointment_id)


@tools.read
def list_doctors(db: Database, specialty: str | None = None) -> list[Doctor]:
    """List the clinic's doctors, optionally only those of one specialty.

    specialty: one of general practice, dermatology, cardiology, pediatrics, orthopedics
    """
    if specialty is not None and specialty not in SPECIALTIES:
        raise ToolError(f"unknown specialty {specialty!r}; known: {', '.join(SPECIALTIES)}")
    return [d for d in db.rows("doctors") if specialty is None or d.specialty == specialty]


@tools.read
def get_doctor(db: Database, doctor_id: str) -> Doctor:
    """Get a doctor's record by doctor ID.

    doctor_id: for example D01
    """
    doctor = db.get("doctors", doctor_id)
    if doctor is None:
        raise ToolError(f"doctor {doctor_id} not found")
    return doctor


@tools.read
def find_open_slots(db: Database, doctor_id: str, date: str | None = None) -> list[Slot]:
    """List a doctor's available slots, optionally on one date only.

    doctor_id: the doctor's ID
    date: YYYY-MM-DD
    """
    get_doctor(db, doctor_id)
    slots = [
        s
        for s in db.where("slots", doctor_id=doctor_id, available=True)
        if s.date >= TODAY and (date is None or s.date == date)
    ]
    return sorted(slots, key=lambda s: (s.date, s.time))


@tools.read
def list_prescriptions(db: Database, patient_id: str) -> list[Prescription]:
    """List a patient's prescriptions.

    patient_id: the patient's ID
    """
    _patient(db, patient_id)
    return db.where("prescriptions", patient_id=patient_id)


@tools.read
def list_invoices(db: Database, patient_id: str) -> list[Invoice]:
    """List a patient's invoices, paid and unpaid.

    patient_id: the patient's ID
    """
    _patient(db, patient_id)
    return db.where("invoices", patient_id=patient_id)


@tools.write
def book_appointment(db: Database, patient_id: str, slot_id: str, reason: str) -> Appointment:
    """Book an available slot for a patient.

    patient_id: the patient's ID
    slot_id: an available slot, from find_open_slots
    reason: the reason for the visit, in a few words
    """
    _patient(db, patient_id)
    slot = db.get("slots", slot_id)
    if slot is None or not slot.available:
        raise ToolError(f"slot {slot_id} is not available")
    number = 20001 + db.count("appointments")
    appointment = Appointment(
        f"A{number}", patient_id, slot.doctor_id, slot_id, slot.date, slot.time, reason
    )
    db.insert(appointment)
    db.update("slots", slot_id, available=False)
    return appointment


@tools.write
def cancel_appointment(db: Database, appointment_id: str) -> Appointment:
    """Cancel a scheduled appointment; its slot becomes available again.

    appointment_id: the appointment's ID
    """
    appointment = _appointment(db, appointment_id)
    if appointment.status != "scheduled":
        raise ToolError(f"appointment {appointment_id} is {appointment.status}, not scheduled")
    db.update("slots", appointment.slot_id, available=True)
    return db.update("appointments", appointment_id, status="cancelled")


@tools.write
def reschedule_appointment(db: Database, appointment_id: str, slot_id: str) -> Appointment:
    """Move a scheduled appointment to another available slot of the same doctor.

    appointment_id: the appointment's ID
    slot_id: the new slot, from find_open_slots
    """
    appointment = _appointment(db, appointment_id)
    if appointment.status != "scheduled":
        raise ToolError(f"appointment {appointment_id} is {appointment.status}, not scheduled")
    slot = db.get("slots", slot_id)
    if slot is None or not slot.available:
        raise ToolError(f"slot {slot_id} is not available")
    if slot.doctor_id != appointment.doctor_id:
        raise ToolError("the new slot belongs to another doctor")
    db.update("slots", appointment.slot_id, available=True)
    db.update("slots", slot_id, available=False)
    return db.update(
        "appointments", appointment_id, slot_id=slot_id, date=slot.date, time=slot.time
    )


@tools.write
def request_refill(db: Database, prescription_id: str) -> Prescription:
    """Request a refill of a prescription; one refill is used up.

    prescription_id: the prescription's ID
    """
    prescription = db.get("prescriptions", prescription_id)
    if prescription is None:
        raise ToolError(f"prescription {prescription_id} not found")
    if prescription.refills_left < 1:
        raise ToolError(f"prescription {prescription_id} has no refills left")
    return db.update(
        "prescriptions",
        prescription_id,
        refills_left=prescription.refills_left - 1,
        refill_requests=prescription.refill_requests + 1,
    )


@tools.write
def pay_invoice(
    db: Database, invoice_id: str, method: Literal["card_on_file", "insurance"]
) -> Invoice:
    """Pay an unpaid invoice in full.

    invoice_id: the invoice's ID
    method: card_on_file, or insurance for a patient with an insurance ID
    """
    invoice = db.get("invoices", invoice_id)
    if invoice is None:
        raise ToolError(f"invoice {invoice_id} not found")
    if invoice.status == "paid":
        raise ToolError(f"invoice {invoice_id} is already paid")
    return db.update("invoices", invoice_id, status="paid", paid_with=method)


@tools.write
def update_contact(
    db: Database, patient_id: str, phone: str | None = None, email: str | None = None
) -> Patient:
    """Change a patient's phone number or email address.

    patient_id: the patient's ID
    phone: the new phone number
    email: the new email address
    """
    _patient(db, patient_id)
    if phone is None and email is None:
        raise ToolError("give a new phone or a new email")
    changes = {k: v for k, v in (("phone", phone), ("email", email)) if v is not None}
    return db.update("patients", patient_id, **changes)


# ----------------------------------------------------------------------- the database


def generate_db(rng: random.Random, scale: int) -> Iterable[Row]:
    doctors = []
    for i in range(10 * scale):
        doctor = Doctor(
            f"D{i + 1:02d}",
            "Dr. " + pick(rng, FIRST_NAMES) + " " + pick(rng, LAST_NAMES),
            SPECIALTIES[i % len(SPECIALTIES)],
            accepts_new_patients=rng.random() < 0.7,
            visit_fee=float(rng.choice((80, 95, 120, 150, 180))),
        )
        doctors.append(doctor)
        yield doctor
    slots = []
    days = dates_after(TODAY, 21)
    for doctor in doctors:
        for day in days:
            for time in rng.sample(TIMES, 3):
                slot = Slot(f"S{len(slots) + 1:05d}", doctor.doctor_id, day, time)
                slots.append(slot)
    booked: set[str] = set()
    appointments, invoices, prescriptions = [], [], []
    for i in range(120 * scale):
        name = pick(rng, FIRST_NAMES) + " " + pick(rng, LAST_NAMES)
        born = f"{rng.randint(1940, 2012)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        patient = Patient(
            f"P{1001 + i}",
            name,
            born,
            f"555-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}",
            name.lower().replace(" ", ".") + f"{rng.randint(1, 99)}@example.org",
            f"INS-{rng.randint(100000, 999999)}" if rng.random() < 0.6 else None,
        )
        yield patient
        for _ in range(rng.choice((0, 1, 1, 2, 3))):
            slot = rng.choice(slots)
            if slot.slot_id in booked:
                continue
            booked.add(slot.slot_id)
            appointment = Appointment(
                f"A{20001 + len(appointments)}",
                patient.patient_id,
                slot.doctor_id,
                slot.slot_id,
                slot.date,
                slot.time,
                pick(
                    rng,
                    (
                        "check-up",
                        "follow-up",
                        "rash",
                        "back pain",
                        "chest pain",
                        "vaccination",
                        "blood test results",
                        "knee injury",
                    ),
                ),
            )
            appointments.append(appointment)
        for _ in range(rng.choice((0, 1, 1, 2))):
            past = Appointment(
                f"A{20001 + len(appointments)}",
                patient.patient_id,
                rng.choice(doctors).doctor_id,
                "S00000",
                f"2027-0{rng.randint(1, 2)}-{rng.randint(1, 28):02d}",
                rng.choice(TIMES),
                "check-up",
                "completed",
            )
            appointments.append(past)
            fee = next(d.visit_fee for d in doctors if d.doctor_id == past.doctor_id)
            invoices.append(
                Invoice(
                    f"I{5001 + len(invoices)}",
                    patient.patient_id,
                    past.appointment_id,
                    fee,
                    "paid" if rng.random() < 0.5 else "unpaid",
                )
            )
        for _ in range(rng.choice((0, 1, 2))):
            prescriptions.append(
                Prescription(
                    f"RX{3001 + len(prescriptions)}",
                    patient.patient_id,
                    rng.choice(doctors).doctor_id,
                    rng.choice(MEDICATIONS),
                    rng.choice((0, 0, 1, 2, 3)),
                    "active" if rng.random() < 0.8 else "expired",
                )
            )
    for slot in slots:
        yield Slot(slot.slot_id, slot.doctor_id, slot.date, slot.time, slot.slot_id not in booked)
    yield from appointments
    yield from invoices
    yield from prescriptions


# ------------------------------------------------------------------------- the tasks

FACTS = {
    "name": Fact("full name", ("name",)),
    "date_of_birth": Fact("date of birth", ("date of birth", "birth date", "birthday", "born")),
    "patient_id": Fact("patient ID", ("patient id", "patient number")),
    "phone": Fact("new phone number", ("phone", "number to use")),
    "email": Fact("new email address", ("email", "e-mail")),
    "date": Fact("preferred date", ("which date", "what date", "preferred date", "which day")),
}


def _identify(
    patient: Patient, rng: random.Random
) -> tuple[str, tuple[str, ...], tuple[str, ...], Call]:
    """How the patient introduces themself (:func:`introduce`)."""
    pid, name, born = patient.patient_id, patient.name, patient.date_of_birth
    return introduce(
        rng,
        by_id=("patient_id", f"My patient ID is {pid}.", Call("get_patient", {"patient_id": pid})),
        by_facts=(("name", "date_of_birth"), f"I'm {name}, born {born}.", f"This is {name}.",
                  Call("find_patient", {"name": name, "date_of_birth": born})),
    )  # fmt: skip


def _scenario(patient: Patient, goal: str, opening: str, rng: random.Random, **known: str):
    intro, volunteered, ask, lookup = _identify(patient, rng)
    facts = {"name": patient.name, "date_of_birth": patient.date_of_birth,
             "patient_id": patient.patient_id, **known}  # fmt: skip
    text = " ".join(part for part in (pick(rng, ("Hi.", "Hello,", "Good morning.", "")),
                                      opening, intro) if part)  # fmt: skip
    scenario = Scenario(
        persona=f"{patient.name}, a patient of the clinic (born {patient.date_of_birth}).",
        goal=goal,
        opening=text,
        known=facts,
        volunteered=volunteered,
    )
    return scenario, ask, lookup


def _scheduled(db: Database, patient: Patient) -> list[Appointment]:
    return [a for a in db.where("appointments", patient_id=patient.patient_id)
            if a.status == "scheduled"]  # fmt: skip


def _notice_ok(date: str) -> bool:
    return date >= dates_after(TODAY, 3)[2]


def _task(family: str, rng: random.Random, **fields) -> ToolTask:
    return ToolTask(name=f"clinic-{family}-{rng.randrange(16**8):08x}", domain="clinic",
                    family=family, **fields)  # fmt: skip


def gen_cancel(db: Database, rng: random.Random, late: bool = False) -> ToolTask | None:
    # A late cancellation is rare among random appointments, so its family draws from
    # the appointments within the notice period only.
    upcoming = [a for a in db.rows("appointments")
                if a.status == "scheduled" and _notice_ok(a.date) != late]  # fmt: skip
    appointment = rng.choice(upcoming)
    patient = db.get("patients", appointment.patient_id)
    doctor = db.get("doctors", appointment.doctor_id)
    allowed = _notice_ok(appointment.date)
    scenario, ask, lookup = _scenario(
        patient,
        f"cancel the appointment with {doctor.name} on {appointment.date}",
        pick(
            rng,
            (
                f"I need to cancel my appointment with {doctor.name} on {appointment.date}.",
                f"Please cancel my {appointment.date} visit with {doctor.name}.",
            ),
        ),
        rng,
    )
    lookups = ((lookup,), (Call("list_appointments", {"patient_id": patient.patient_id}),))
    aid = appointment.appointment_id
    if not allowed:
        return _task("cancel_late", rng, scenario=scenario, lookups=lookups, ask=ask,
                     outcome=(f"I'm sorry, I can't cancel your appointment {aid} "
                              f"on {appointment.date}: it is less than 2 days away. Late changes "
                              "must be made by phone with the doctor's office."),
                     required_info=(appointment.appointment_id,))  # fmt: skip
    return _task(
        "cancel", rng, scenario=scenario, lookups=lookups, ask=ask,
        writes=((Call("cancel_appointment", {"appointment_id": appointment.appointment_id}),),),
        confirm=(f"cancel appointment {appointment.appointment_id} with {doctor.name} "
                 f"on {appointment.date} at {appointment.time}"),
        outcome=f"Your appointment {aid} on {appointment.date} is cancelled.",
        required_info=(appointment.appointment_id,),
    )  # fmt: skip


def gen_cancel_late(db: Database, rng: random.Random) -> ToolTask | None:
    return gen_cancel(db, rng, late=True)


def gen_reschedule(db: Database, rng: random.Random) -> ToolTask | None:
    patient = rng.choice(list(db.rows("patients")))
    upcoming = [a for a in _scheduled(db, patient) if _notice_ok(a.date)]
    if not upcoming:
        return None
    appointment = rng.choice(upcoming)
    doctor = db.get("doctors", appointment.doctor_id)
    free = find_open_slots(db, doctor.doctor_id)
    dates = sorted({s.date for s in free if s.date != appointment.date})
    if not dates:
        return None
    date = rng.choice(dates)
    slot = min((s for s in free if s.date == date), key=lambda s: s.time)
    scenario, ask, lookup = _scenario(
        patient,
        f"move the appointment with {doctor.name} to {date}, earliest time that day",
        pick(rng, (f"I'd like to move my appointment with {doctor.name} to {date}, "
                   "as early as possible that day.",
                   f"Can I reschedule my visit with {doctor.name}? {date} would suit me, "
                   "the earliest slot.")),
        rng, date=date,
    )  # fmt: skip
    return _task(
        "reschedule", rng, scenario=scenario, ask=ask,
        lookups=((lookup,), (Call("list_appointments", {"patient_id": patient.patient_id}),),
                 (Call("find_open_slots", {"doctor_id": doctor.doctor_id, "date": date}),)),
        writes=((Call("reschedule_appointment", {"appointment_id": appointment.appointment_id,
                                                 "slot_id": slot.slot_id}),),),
        confirm=(f"move appointment {appointment.appointment_id} with {doctor.name} "
                 f"to {date} at {slot.time}"),
        outcome=f"Done: your appointment with {doctor.name} is now on {date} at {slot.time}.",
        required_info=(date, slot.time),
    )  # fmt: skip


def gen_book(db: Database, rng: random.Random, refusal: str | None = None) -> ToolTask | None:
    # The refusals are rare among random requests, so their families draw the patients
    # (at the cap) or the doctors (closed to new patients) that call for them.
    patients = list(db.rows("patients"))
    if refusal == "over_limit":
        patients = [p for p in patients if len(_scheduled(db, p)) >= MAX_SCHEDULED]
    patient = rng.choice(patients)
    doctors = list(db.rows("doctors"))
    if refusal == "closed":
        doctors = [d for d in doctors if not d.accepts_new_patients]
    doctor = rng.choice(doctors)
    specialty = doctor.specialty
    seen = any(a.doctor_id == doctor.doctor_id
               for a in db.where("appointments", patient_id=patient.patient_id))  # fmt: skip
    if refusal == "closed" and (seen or len(_scheduled(db, patient)) >= MAX_SCHEDULED):
        return None
    free = find_open_slots(db, doctor.doctor_id)
    if not free:
        return None
    date = rng.choice(sorted({s.date for s in free}))
    slot = min((s for s in free if s.date == date), key=lambda s: s.time)
    reason = pick(rng, ("a check-up", "a skin rash", "knee pain", "a follow-up", "a vaccination"))
    scenario, ask, lookup = _scenario(
        patient,
        f"book the earliest slot with {doctor.name} on {date} for {reason}",
        pick(rng, (f"I want to see {doctor.name} ({specialty}) on {date} for {reason}, "
                   "the earliest time you have.",
                   f"Could you book me with {doctor.name} on {date}? It's for {reason}; "
                   "earliest slot please.")),
        rng, date=date,
    )  # fmt: skip
    lookups = ((lookup,),
               (Call("list_appointments", {"patient_id": patient.patient_id}),
                Call("get_doctor", {"doctor_id": doctor.doctor_id})))  # fmt: skip
    if len(_scheduled(db, patient)) >= MAX_SCHEDULED:
        return _task("book_over_limit", rng, scenario=scenario, lookups=lookups, ask=ask,
                     outcome=(f"I'm sorry, I can't book this: you already have {MAX_SCHEDULED} "
                              "scheduled appointments, the most our policy allows."),
                     required_info=(str(MAX_SCHEDULED),))  # fmt: skip
    if not doctor.accepts_new_patients and not seen:
        return _task("book_closed_doctor", rng, scenario=scenario, lookups=lookups, ask=ask,
                     outcome=(f"I'm sorry, {doctor.name} does not accept new patients, and you "
                              "have not seen them before, so I can't book this appointment."),
                     required_info=(doctor.name,))  # fmt: skip
    lookups += ((Call("find_open_slots", {"doctor_id": doctor.doctor_id, "date": date}),),)
    return _task(
        "book", rng, scenario=scenario, lookups=lookups, ask=ask,
        writes=((Call("book_appointment", {"patient_id": patient.patient_id,
                                           "slot_id": slot.slot_id, "reason": reason}),),),
        confirm=f"book {doctor.name} on {date} at {slot.time} for {reason}",
        outcome=f"You're booked with {doctor.name} on {date} at {slot.time}.",
        required_info=(date, slot.time),
    )  # fmt: skip


def gen_book_over_limit(db: Database, rng: random.Random) -> ToolTask | None:
    return gen_book(db, rng, refusal="over_limit")


def gen_book_closed_doctor(db: Database, rng: random.Random) -> ToolTask | None:
    return gen_book(db, rng, refusal="closed")


def gen_refill(db: Database, rng: random.Random) -> ToolTask | None:
    prescriptions = list(db.rows("prescriptions"))
    prescription = rng.choice(prescriptions)
    patient = db.get("patients", prescription.patient_id)
    scenario, ask, lookup = _scenario(
        patient,
        f"get a refill of {prescription.medication}",
        pick(rng, (f"I'm running out of my {prescription.medication}; can I get a refill?",
                   f"I need a refill of {prescription.medication}.")),
        rng,
    )  # fmt: skip
    lookups = ((lookup,), (Call("list_prescriptions", {"patient_id": patient.patient_id}),))
    same = [p for p in db.where("prescriptions", patient_id=patient.patient_id)
            if p.medication == prescription.medication]  # fmt: skip
    if len(same) > 1:
        return None  # which one is meant would be ambiguous
    if prescription.status != "active" or prescription.refills_left < 1:
        why = "has expired" if prescription.status != "active" else "has no refills left"
        return _task("refill_refused", rng, scenario=scenario, lookups=lookups, ask=ask,
                     outcome=(f"I'm sorry, your {prescription.medication} prescription "
                              f"{prescription.prescription_id} {why}, so I can't request a refill. "
                              "Please book an appointment with your doctor."),
                     required_info=(prescription.prescription_id,))  # fmt: skip
    left = prescription.refills_left - 1
    return _task(
        "refill", rng, scenario=scenario, lookups=lookups, ask=ask,
        writes=((Call("request_refill", {"prescription_id": prescription.prescription_id}),),),
        confirm=f"request a refill of {prescription.medication} ({prescription.prescription_id})",
        outcome=(f"The refill of {prescription.medication} is requested; {left} refill(s) "
                 "remain on that prescription."),
        required_info=(f"{left} refill",),
    )  # fmt: skip


def gen_pay(db: Database, rng: random.Random) -> ToolTask | None:
    unpaid = [i for i in db.rows("invoices") if i.status == "unpaid"]
    invoice = rng.choice(unpaid)
    patient = db.get("patients", invoice.patient_id)
    if sum(i.status == "unpaid" for i in db.where("invoices", patient_id=patient.patient_id)) > 1:
        return None
    method = "insurance" if patient.insurance_id and rng.random() < 0.5 else "card_on_file"
    how = "through my insurance" if method == "insurance" else "with the card you have on file"
    scenario, ask, lookup = _scenario(
        patient, f"pay the open invoice {how}",
        pick(rng, (f"I'd like to pay my open bill {how}.", f"Can I settle my invoice {how}?")),
        rng,
    )  # fmt: skip
    amount = f"{invoice.amount:.2f}"
    return _task(
        "pay_invoice", rng, scenario=scenario, ask=ask,
        lookups=((lookup,), (Call("list_invoices", {"patient_id": patient.patient_id}),)),
        writes=((Call("pay_invoice", {"invoice_id": invoice.invoice_id, "method": method}),),),
        confirm=f"pay invoice {invoice.invoice_id} of ${amount} {how.replace('my ', 'your ')}",
        outcome=f"Invoice {invoice.invoice_id} of ${amount} is paid.",
        required_info=(amount,),
    )  # fmt: skip


def gen_balance(db: Database, rng: random.Random) -> ToolTask | None:
    patient = rng.choice(list(db.rows("patients")))
    invoices = db.where("invoices", patient_id=patient.patient_id)
    if not invoices:
        return None
    owed = sum(i.amount for i in invoices if i.status == "unpaid")
    scenario, ask, lookup = _scenario(
        patient, "find out how much they owe the clinic",
        pick(rng, ("How much do I owe you?", "Do I have any unpaid bills with you?")), rng,
    )  # fmt: skip
    return _task(
        "balance", rng, scenario=scenario, ask=ask,
        lookups=((lookup,), (Call("list_invoices", {"patient_id": patient.patient_id}),)),
        outcome=f"Your unpaid balance is ${owed:.2f}.",
        required_info=(f"{owed:.2f}",),
    )  # fmt: skip


def gen_contact(db: Database, rng: random.Random) -> ToolTask | None:
    patient = rng.choice(list(db.rows("patients")))
    phone = f"555-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}"
    scenario, ask, lookup = _scenario(
        patient, f"change their phone number to {phone}",
        pick(rng, ("I have a new phone number.", "Please update my phone number.")), rng,
        phone=phone,
    )  # fmt: skip
    return _task(
        "update_contact", rng, scenario=scenario, ask=(*ask, "phone"),
        lookups=((lookup,),),
        writes=((Call("update_contact", {"patient_id": patient.patient_id, "phone": phone}),),),
        confirm=f"change your phone number to {phone}",
        outcome=f"Your phone number is now {phone}.",
        required_info=(phone,),
    )  # fmt: skip


DOMAIN = register_domain(
    Domain(
        name="clinic",
        description="a clinic's front desk: appointments, refills, invoices, contact details",
        tables=TABLES,
        generate_db=generate_db,
        toolkit=tools,
        policy=POLICY,
        facts=FACTS,
        task_generators={
            "cancel": gen_cancel,
            "cancel_late": gen_cancel_late,
            "reschedule": gen_reschedule,
            "book": gen_book,
            "book_over_limit": gen_book_over_limit,
            "book_closed_doctor": gen_book_closed_doctor,
            "refill": gen_refill,
            "pay_invoice": gen_pay,
            "balance": gen_balance,
            "update_contact": gen_contact,
        },
    )
)
